"""The Python API: tplan.solve / tplan.check take a path or a dict and answer as the JSON contract does."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import tplan
from conftest import EXAMPLES, ROOT, run_json


def test_readme_python_example_runs():
    code = re.search(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    exec(compile(code, "README.md", "exec"), {})  # the documented example, as a user pastes it


def test_solve_on_a_path_equals_the_command_line_json():
    code, expected = run_json("solve", EXAMPLES / "quickstart.yaml")
    answer = tplan.solve(EXAMPLES / "quickstart.yaml")
    assert code == 0 and answer.ok
    assert answer.to_dict() == expected


def test_check_reports_a_violation_and_its_numbers():
    goal = {"model": "llama-2-7b", "data": {"tokens": 1e8}, "hardware": {"gpu": "a100-80gb"},
            "knobs": {"precision": "bf16", "zero_stage": 0, "offload": "none", "lora_rank": 0, "micro_batch": 1,
                      "context": 512, "grad_checkpointing": True}}
    answer = tplan.check(goal)
    assert answer.status == "fail" and not answer.ok
    assert [violation["rule"] for violation in answer.violations] == ["memory/fits-gpu-memory"]
    assert answer.estimate["memory_per_gpu_bytes"] > 80 * 2**30


def test_infeasible_goal_names_its_conflict_and_repairs():
    answer = tplan.solve({"model": "llama-2-7b", "data": {"tokens": 1e8}, "hardware": {"gpu": "rtx-4090"},
                          "knobs": {"lora_rank": 0, "offload": "none"}})
    assert answer.status == "infeasible" and answer.config is None
    assert answer.conflict == ["memory/fits-gpu-memory"] and answer.suggestions


def test_bad_input_raises_input_error_with_the_place():
    with pytest.raises(tplan.InputError, match=r"data.tokens.*token count"):
        tplan.solve({"model": "gpt2", "data": {"tokens": "lots"}, "hardware": {"gpu": "a100-80gb"}})
    with pytest.raises(tplan.InputError, match="finite"):
        tplan.check({"model": "gpt2", "data": {"tokens": float("nan")}, "hardware": {"gpu": "a100-80gb"}})


def test_importing_tplan_does_not_load_or_tools():
    import subprocess
    import sys

    probe = "import sys, tplan; print('ortools' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True).stdout.strip() == "False"


def test_a_dict_goal_reads_relative_paths_from_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / "team.yaml").write_text("pack: team\nconstraints:\n"
                                        "  - {id: small, expr: \"micro_batch <= 2\", message: m}\n")
    monkeypatch.chdir(tmp_path)
    answer = tplan.solve({"model": "gpt2", "data": {"tokens": 1e8}, "hardware": {"gpu": "a100-80gb"},
                          "rules": ["team.yaml"], "knobs": {"micro_batch": [1, 2, 4, 8], "context": 1024}},
                         explain=False)
    assert answer.ok and answer.config["micro_batch"] <= 2


RUN = {"model": "gpt2", "hardware": {"gpu": "a100-80gb"},
       "knobs": {"context": 1024, "micro_batch": [4, 8], "precision": "bf16", "zero_stage": 0, "offload": "none",
                 "lora_rank": 0, "quantization": "none"}}


@pytest.mark.parametrize("data", [
    {"samples": 64000, "tokens_per_sample": 1024, "global_batch": 64},
    {"epochs": 4, "dataset_tokens": "16.384M", "global_batch": 64},
    {"steps": 1000, "global_batch": 64},
    {"steps": 1000, "global_batch_tokens": 65536},
])
def test_samples_epochs_and_steps_are_the_same_run_as_its_tokens(data):
    tokens = tplan.solve({**RUN, "data": {"tokens": 65_536_000, "global_batch": 64}}, explain=False)
    other = tplan.solve({**RUN, "data": data}, explain=False)
    assert other.config == tokens.config
    for key in ("training_tokens", "optimizer_steps", "train_seconds"):
        assert other.estimate[key] == pytest.approx(tokens.estimate[key], rel=1e-12), key


@pytest.mark.parametrize("data, message", [
    ({"samples": 5}, "data.tokens_per_sample with data.samples"),
    ({"tokens": 1e9, "steps": 4}, "exactly one of"),
    ({"dataset_tokens": 1e9}, "data.epochs with data.dataset_tokens"),
    ({}, "not none"),
])
def test_an_amount_of_data_is_given_exactly_once(data, message):
    with pytest.raises(tplan.InputError, match=message):
        tplan.solve({**RUN, "data": data}, explain=False)


def test_the_answer_prints_money_when_the_goal_gives_a_price():
    goal = {**RUN, "data": {"tokens": 65_536_000, "global_batch": 64}}
    free = tplan.solve(goal, explain=False)
    priced = tplan.solve({**goal, "hardware": {**goal["hardware"], "price_per_gpu_hour": 2.5}}, explain=False)
    assert "cost" not in free.estimate
    assert priced.estimate["cost"] == pytest.approx(2.5 * priced.estimate["gpu_hours"], rel=1e-12)
