"""The command line contract: JSON shape, exit codes, and clear errors for bad input."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest
import yaml

from conftest import EXAMPLES, run_cli, run_json

KNOBS = {"precision", "optimizer", "micro_batch", "grad_accum", "context", "zero_stage", "offload",
         "grad_checkpointing", "lora_rank", "quantization", "gpus", "dp", "tp", "pp", "cp", "vp", "gpu", "nodes"}
ESTIMATE = {"params", "trainable_params", "memory_per_gpu_bytes", "memory_breakdown_bytes", "cpu_memory_bytes",
            "tokens_per_second", "train_seconds", "model_flops_utilization"}

LLAMA_FULL_FT = {"model": "llama-2-7b", "task": "finetune", "data": {"tokens": 1e8},
                 "hardware": {"gpu": "a100-80gb"},
                 "knobs": {"precision": "bf16", "zero_stage": 0, "offload": "none", "lora_rank": 0,
                           "micro_batch": 1, "context": 512, "grad_checkpointing": True}}


def test_solve_example_is_optimal_with_the_contract_shape():
    code, answer = run_json("solve", EXAMPLES / "quickstart.yaml")
    assert code == 0
    assert answer["status"] == "optimal"
    assert set(answer["config"]) == KNOBS
    assert ESTIMATE <= set(answer["estimate"])
    breakdown = answer["estimate"]["memory_breakdown_bytes"]
    assert set(breakdown) == {"weights", "gradients", "optimizer", "activations", "other"}
    assert sum(breakdown.values()) == pytest.approx(answer["estimate"]["memory_per_gpu_bytes"], rel=1e-9)
    assert answer["violations"] == []


def test_full_finetune_of_7b_on_one_a100_is_infeasible_and_explained(tmp_goal):
    code, answer = run_json("solve", tmp_goal(LLAMA_FULL_FT))
    assert code == 1
    assert answer["status"] == "infeasible"
    assert answer["conflict"] == ["memory/fits-gpu-memory"]
    assert any("lora_rank" in hint or "zero_stage" in hint for hint in answer["suggestions"])


def test_human_report_names_the_conflict(tmp_goal):
    result = run_cli("solve", tmp_goal(LLAMA_FULL_FT))
    assert result.returncode == 1
    assert "memory/fits-gpu-memory" in result.stdout


def test_check_reports_the_numbers_of_a_violation(tmp_goal):
    result = run_cli("check", tmp_goal(LLAMA_FULL_FT))
    assert result.returncode == 1
    line = next(line for line in result.stdout.splitlines() if "memory/fits-gpu-memory" in line)
    assert "GiB per GPU" in line and "80.0 GiB" in line


def test_check_json_prints_the_estimate_even_when_failing(tmp_goal):
    code, (answer,) = run_json("check", tmp_goal(LLAMA_FULL_FT))
    assert code == 1 and answer["status"] == "fail"
    assert answer["estimate"]["memory_per_gpu_bytes"] > 80 * 2**30
    assert answer["violations"][0]["rule"] == "memory/fits-gpu-memory"


def test_check_passes_a_config_that_fits(tmp_goal):
    config = {**LLAMA_FULL_FT, "knobs": {**LLAMA_FULL_FT["knobs"], "lora_rank": 8}}
    code, (answer,) = run_json("check", tmp_goal(config))
    assert code == 0 and answer["status"] == "pass"


def test_catalogs_list_gpus_and_models_with_params():
    code, gpus = run_json("catalog", "gpus")
    assert code == 0 and gpus["a100-80gb"]["memory_gib"] == 80
    code, models = run_json("catalog", "models")
    assert code == 0 and models["llama-3.1-8b"]["params"] > 8e9


@pytest.mark.parametrize("goal, place, expected", [
    ({"model": "llama-3.1-8b", "data": {"tokens": 1e9}}, "top level", "hardware"),
    ({"model": "llama-3.1-8b", "data": {"tokens": 1e9}, "hardware": {"gpu": "a100-90gb"}}, "hardware.gpu", "a100-80gb"),
    ({"model": "llama-9", "data": {"tokens": 1e9}, "hardware": {"gpu": "a100-80gb"}}, "model", "catalog"),
    ({"model": "gpt2", "data": {"tokens": "many"}, "hardware": {"gpu": "a100-80gb"}}, "data.tokens", "token count"),
    ({"model": "gpt2", "data": {"tokens": 1e9}, "hardware": {"gpu": "a100-80gb"}, "knobs": {"precision": "fp12"}},
     "knobs.precision", "bf16"),
    ({"model": "gpt2", "data": {"tokens": 1e9}, "hardware": {"gpu": "a100-80gb"}, "knobs": {"batch": 4}},
     "knobs.batch", "micro_batch"),
    ({"model": "gpt2", "data": {"tokens": 1e9}, "hardware": {"gpu": "a100-80gb"}, "deadline": "two days"},
     "deadline", "48h"),
])
def test_bad_goal_exits_2_naming_file_place_and_expectation(tmp_goal, goal, place, expected):
    path = tmp_goal(goal)
    result = run_cli("solve", path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert str(path) in result.stderr and place in result.stderr and expected in result.stderr


def test_yaml_syntax_error_names_the_line(tmp_path):
    path = tmp_path / "goal.yaml"
    path.write_text("model: gpt2\nhardware: {gpu: a100-80gb\n")
    result = run_cli("solve", path)
    assert result.returncode == 2 and "line 3" in result.stderr and "Traceback" not in result.stderr


def test_missing_file_is_bad_input(tmp_path):
    result = run_cli("solve", tmp_path / "nope.yaml")
    assert result.returncode == 2 and "nope.yaml" in result.stderr


@pytest.mark.parametrize("pack, expected", [
    ("derived: {a: b + 1, b: a * 2}", "a -> b -> a"),
    ("derived: {a: nonsense_name * 2}", "'nonsense_name'"),
    ("derived: {a: __import__('os')}", "function"),
    ("derived: {a: 'model.hidden +'}", "valid expression"),
    ("constraints: [{id: x, expr: 'gpus <', message: m}]", "valid expression"),
    ("params: {p: {value: 3}}", "source"),
])
def test_bad_rule_pack_exits_2_with_the_reason(tmp_path, tmp_goal, pack, expected):
    (tmp_path / "team.yaml").write_text(f"pack: team\n{pack}\n")
    goal = tmp_goal({"model": "gpt2", "data": {"tokens": 1e9}, "hardware": {"gpu": "a100-80gb"},
                     "rules": ["team.yaml"]})
    result = run_cli("solve", goal)
    assert result.returncode == 2, result.stdout
    assert "team.yaml" in result.stderr and expected in result.stderr and "Traceback" not in result.stderr


def test_team_pack_rule_blocks_a_plan(tmp_path, tmp_goal):
    (tmp_path / "team.yaml").write_text(
        "pack: team\nconstraints:\n  - id: no-fp16\n    expr: precision != 'fp16'\n    message: no fp16 here\n")
    goal = {"model": "gpt2", "data": {"tokens": 1e9}, "hardware": {"gpu": "a100-80gb"},
            "knobs": {"precision": "fp16", "context": 1024}, "rules": ["team.yaml"]}
    code, answer = run_json("solve", tmp_goal(goal))
    assert code == 1 and answer["conflict"] == ["team/no-fp16"]
    code, (answer,) = run_json("check", tmp_goal(goal))
    assert code == 1 and [v["rule"] for v in answer["violations"]] == ["team/no-fp16"]
    assert json.dumps(answer)  # serialisable


def _run_in_process(*args: str) -> int:
    from tplan.cli import run

    with pytest.raises(SystemExit) as exit_:
        run([str(arg) for arg in args])
    return exit_.value.code


def test_ctrl_c_during_the_search_exits_130_and_writes_nothing(tmp_path, capsys, monkeypatch):
    """A real SIGINT while CP-SAT searches a space it needs seconds for: the search is not cut
    short into a plan; the command exits 130 with one line and no output file."""
    import signal
    import threading

    from tplan import search

    goal = {**LLAMA_FULL_FT, "hardware": {"gpu": "a100-80gb", "gpus_per_node": 8},
            "knobs": {"precision": ["bf16", "fp16", "fp32"], "zero_stage": [0, 1, 2, 3], "offload": "none",
                      "quantization": "none", "optimizer": ["adamw", "adamw-8bit", "sgd", "lion"],
                      "micro_batch": list(range(1, 65)), "context": [256 * i for i in range(1, 65)],
                      "lora_rank": list(range(1, 65)), "grad_accum": list(range(1, 33))}}
    path, output = tmp_path / "goal.yaml", tmp_path / "ds.json"
    path.write_text(json.dumps(goal))
    # the signal is sent 0.2 s into the search, which takes seconds (4.5 s on 2 CPUs)
    timer = threading.Timer(0.2, signal.pthread_kill, (threading.main_thread().ident, signal.SIGINT))
    run = search.Search.run

    def run_and_interrupt(self):
        if not timer.is_alive() and not timer.finished.is_set():
            timer.start()
        return run(self)
    monkeypatch.setattr(search.Search, "run", run_and_interrupt)
    try:
        code = _run_in_process("solve", path, "--time-limit", "30", "--deepspeed", output)
    finally:
        timer.cancel()
    assert code == 130
    assert not output.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["goal.yaml"]
    assert capsys.readouterr().err.strip().count("\n") == 0


def test_interrupted_write_removes_the_outputs_it_created(tmp_path, monkeypatch):
    import os

    from tplan import write

    real, calls = os.replace, []

    def replace_then_interrupt(source, target):
        calls.append(target)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real(source, target)

    monkeypatch.setattr(write.os, "replace", replace_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        write.write_all({str(tmp_path / "ds.json"): "{}", str(tmp_path / "hf.json"): "{}"})
    assert list(tmp_path.iterdir()) == []


def test_an_unexpected_error_is_one_line_and_exit_3(monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr("tplan.api.load_problem", broken)
    assert _run_in_process("solve", EXAMPLES / "quickstart.yaml") == 3
    err = capsys.readouterr().err
    assert err.startswith("tplan: error: internal error (ZeroDivisionError: a bug)") and err.count("\n") == 1


def test_time_limit_bounds_the_whole_command(tmp_goal):
    """A 70B pretrain on 128 nodes that cannot meet a one-day deadline used to take ~3 minutes at the
    default limit (each CP-SAT call had its own); now --time-limit is shared by the whole command."""
    import time

    goal = {"model": "llama-3.1-70b", "task": "pretrain", "data": {"tokens": 2e12},
            "hardware": {"gpu": "h100-sxm", "gpus_per_node": 8, "nodes": 128}, "deadline": "1d"}
    started = time.monotonic()
    result = run_cli("solve", tmp_goal(goal), "--time-limit", "3")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert time.monotonic() - started < 30  # 3 s of search plus loading and compiling, on a busy machine


def test_a_goal_from_standard_input(tmp_path):
    import subprocess
    import sys

    goal = json.dumps({"model": "gpt2", "data": {"tokens": 1e8}, "hardware": {"gpu": "a100-80gb"},
                       "knobs": {"context": 1024}})
    result = subprocess.run([sys.executable, "-m", "tplan", "solve", "-", "--json", "--no-explain"], input=goal,
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0 and json.loads(result.stdout)["status"] == "optimal"
    bad = subprocess.run([sys.executable, "-m", "tplan", "solve", "-"], input="model: [", capture_output=True,
                         text=True, cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.startswith("tplan: error: <stdin>: line")


def test_written_files_get_the_usual_permissions(tmp_path):
    """Outputs are written to temporaries (0600) and renamed: the team must still read them, and run
    launch.sh; a file replaced keeps its own permissions."""
    goal = tmp_path / "goal.yaml"
    goal.write_text(yaml.safe_dump({"model": "gpt2", "data": {"tokens": 1e7}, "hardware": {"gpu": "a10"}}))
    kept = tmp_path / "ds.json"
    kept.write_text("{}")
    kept.chmod(0o640)
    mask = os.umask(0o022)
    try:
        code = _run_in_process("solve", str(goal), "--emit", "hf", "-o", str(tmp_path), "--deepspeed", str(kept))
    finally:
        os.umask(mask)
    assert code == 0
    assert stat.S_IMODE((tmp_path / "hf" / "sft_config.yaml").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "hf" / "launch.sh").stat().st_mode) == 0o755
    assert stat.S_IMODE(kept.stat().st_mode) == 0o640


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)


def test_solving_does_not_load_pandas_and_leaves_the_real_one_importable():
    """cpsat.py imports CP-SAT against a stand-in for pandas (0.2 s of every solve); the stand-in must
    not outlive the import, and a solve must still work."""
    result = _python("import sys; from tplan import api, search; assert 'pandas' not in sys.modules; "
                     "from tplan.goal import load_problem; import tplan.cpsat as c; m = c.cp_model.CpModel(); "
                     "x = m.NewIntVar(0, 3, 'x'); m.Maximize(x); s = c.cp_model.CpSolver(); s.Solve(m); "
                     "assert s.Value(x) == 3; import pandas; print(pandas.Series([1, 2]).sum())")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "3"


def test_an_ortools_that_reads_more_of_pandas_at_load_gets_the_real_one():
    result = _python("import sys, tplan.cpsat as c; del sys.modules[c.MODULE]; c.STAND_IN_NAMES = ('Index',); "
                     "m = c._import(); assert m.CpModel and 'DataFrame' in dir(sys.modules['pandas']); "
                     "assert isinstance(m.pd.Series([1]), m.pd.Series)")
    assert result.returncode == 0, result.stderr
