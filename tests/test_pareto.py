"""--pareto: the plans no other plan beats on time, memory per GPU and cost equal exhaustive evaluation."""

from __future__ import annotations

import itertools

import pytest

import tplan
from tplan import pareto
from tplan.goal import gpu_choices, load_problem
from tplan.load import from_data

GOAL = {"model": "llama-3.2-1b", "task": "finetune", "data": {"tokens": 1e8, "global_batch": 32},
        "hardware": {"gpu": "a100-80gb", "gpus_per_node": 4, "price_per_gpu_hour": 2.0},
        "knobs": {"precision": "bf16", "micro_batch": [1, 2, 4, 8], "context": 2048, "zero_stage": [0, 3],
                  "gpus": [1, 2, 4], "grad_checkpointing": [False, True], "lora_rank": [0, 16], "offload": "none",
                  "quantization": "none", "optimizer": ["adamw", "adamw-8bit"], "tp": 1, "pp": 1}}


def exhaustive_front(goal: dict) -> list[tuple]:
    points = []
    for document in gpu_choices(from_data(goal, "<goal dict>")):
        problem = load_problem(document)
        evaluator = problem.evaluator()
        for combination in itertools.product(*problem.domains.values()):
            assessment = evaluator.assess(dict(zip(problem.domains, combination)))
            if assessment.passes:
                points.append(assessment)
    return sorted(tuple(float(plan.values[axis]) for axis in pareto.AXES) for plan in pareto.non_dominated(points))


def front_of(answer: tplan.Answer) -> list[tuple]:
    return sorted((plan["estimate"]["train_seconds"], plan["estimate"]["memory_per_gpu_bytes"], plan["estimate"]["cost"])
                  for plan in answer.to_dict()["pareto"])


@pytest.mark.parametrize("goal", [
    GOAL,
    {**GOAL, "hardware": {**GOAL["hardware"], "gpu": ["a100-80gb", "h100-sxm"],
                          "price_per_gpu_hour": {"a100-80gb": 2.0, "h100-sxm": 3.5}},
     "knobs": {**GOAL["knobs"], "precision": ["bf16", "fp8"], "optimizer": "adamw", "lora_rank": 0}},
], ids=["one-gpu", "two-gpus"])
def test_the_front_equals_exhaustive_evaluation(goal):
    answer = tplan.solve(goal, explain=False, pareto=True)
    found = front_of(answer)
    expected = exhaustive_front(goal)
    assert answer.to_dict()["pareto_complete"] is True
    assert len(found) == len(expected) > 2
    for ours, best in zip(found, expected):
        assert ours == pytest.approx(best, rel=1e-9)
    fastest = min(found)
    assert answer.estimate["train_seconds"] == pytest.approx(fastest[0], rel=1e-9)  # the answer is on the front


def test_each_trade_off_is_a_full_plan_that_passes_check():
    answer = tplan.solve(GOAL, explain=False, pareto=True)
    for plan in answer.to_dict()["pareto"]:
        assert tplan.check({**GOAL, "knobs": plan["config"]}).status == "pass"


@pytest.mark.parametrize("name", ["trade-offs.svg", "trade-offs.png"])
def test_plot_draws_every_trade_off_and_marks_the_plan_answered(tmp_path, name):
    import xml.etree.ElementTree as ElementTree

    from conftest import run_cli, write_goal

    result = run_cli("solve", write_goal(tmp_path, GOAL), "--plot", tmp_path / name, "--json")
    assert result.returncode == 0, result.stderr
    data = (tmp_path / name).read_bytes()
    if name.endswith(".png"):
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        return
    svg = ElementTree.fromstring(data)
    text = " ".join(node.text or "" for node in svg.iter() if node.tag.endswith("text"))
    assert "memory per GPU (GiB)" in text and "the plan answered" in text
    import json
    plans = json.loads(result.stdout)["pareto"]
    collections = [[mark for mark in group.iter() if mark.tag.endswith(("use", "path"))] for group in svg.iter()
                   if group.get("id", "").startswith("PathCollection")]
    assert len([m for m in collections[0] if m.tag.endswith("use")]) == len(plans)   # every plan ...
    assert collections[1]                                                           # ... then the star


def test_plot_needs_a_known_format(tmp_path):
    from conftest import run_cli, write_goal

    result = run_cli("solve", write_goal(tmp_path, GOAL), "--plot", tmp_path / "chart.pdf")
    assert result.returncode == 2 and ".svg or .png" in result.stderr
    assert not (tmp_path / "chart.pdf").exists()
