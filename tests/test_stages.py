"""Stages planned together: each stage's plan, the totals, and - under a shared deadline or budget -
the best combination, checked against exhaustive evaluation of every stage's configurations."""

from __future__ import annotations

import itertools

import pytest

import tplan
from conftest import exhaustive, run_json, write_goal
from tplan.goal import load_problem
from tplan.load import read
from tplan.stages import stage_documents

KNOBS = {"precision": "bf16", "optimizer": "adamw", "zero_stage": [0, 2], "offload": "none", "lora_rank": 0,
         "quantization": "none", "tp": 1, "pp": 1, "grad_checkpointing": [False, True], "micro_batch": [1, 4],
         "context": 1024, "gpus": [1, 2, 4, 8]}
STAGES = [{"name": "base", "task": "pretrain", "data": {"tokens": 4e9, "global_batch": 64}},
          {"name": "sft", "data": {"tokens": 2e8, "global_batch": 32}, "knobs": {"zero_stage": 0}}]


def staged_goal(**extra) -> dict:
    return {"model": "llama-3.2-1b", "hardware": {"gpu": "a100-80gb", "gpus_per_node": 8},
            "knobs": KNOBS, "stages": STAGES, **extra}


def brute_force(path, objective_sum, limit=0.0, budget=0.0):
    """The best combination of every stage's passing configurations under the shared limits."""
    passing = [exhaustive(load_problem(stage))[1] for _, stage in stage_documents(read(path))]
    best = None
    for combination in itertools.product(*passing):
        seconds = sum(plan.values["train_seconds"] for plan in combination)
        cost = sum(plan.values["cost"] for plan in combination)
        if (limit and seconds > limit) or (budget and cost > budget):
            continue
        score = objective_sum(combination)
        best = score if best is None or score < best else best
    return best


def test_each_stage_gets_its_own_plan_and_the_totals_add_up(tmp_path):
    answer = tplan.solve(write_goal(tmp_path, staged_goal()))
    assert answer.status == "optimal" and answer.config is None
    assert [stage["name"] for stage in answer.stages] == ["base", "sft"]
    assert answer.stages[1]["config"]["zero_stage"] == 0          # the stage's knobs over the shared ones
    total = sum(stage["estimate"]["train_seconds"] for stage in answer.stages)
    assert answer.estimate["train_seconds"] == pytest.approx(total, rel=1e-12)
    assert answer.estimate["memory_per_gpu_bytes"] == max(s["estimate"]["memory_per_gpu_bytes"] for s in answer.stages)


@pytest.mark.parametrize("share", [0.6, 0.9])
def test_cheapest_stages_within_a_shared_deadline_equal_exhaustive_search(tmp_path, share):
    # the fastest plans take `fastest` together; a deadline between that and the cheapest plans' time
    # makes the stages trade time for money against each other
    free = tplan.solve(write_goal(tmp_path, staged_goal(objective="cost"), "free.yaml"))
    fastest = tplan.solve(write_goal(tmp_path, staged_goal(), "fast.yaml")).estimate["train_seconds"]
    limit = fastest + share * (free.estimate["train_seconds"] - fastest)
    path = write_goal(tmp_path, staged_goal(objective="cost", deadline=f"{limit:.0f}s"))
    answer = tplan.solve(path)
    best = brute_force(path, lambda plans: sum(plan.values["cost"] for plan in plans), limit=round(limit))
    assert answer.status in ("optimal", "feasible")
    assert answer.estimate["train_seconds"] <= round(limit) < free.estimate["train_seconds"]
    assert answer.estimate["cost"] == pytest.approx(best, rel=1e-9)


def test_stages_that_cannot_meet_the_deadline_together_are_infeasible(tmp_path):
    fastest = tplan.solve(write_goal(tmp_path, staged_goal(), "fast.yaml")).estimate["train_seconds"]
    code, answer = run_json("solve", write_goal(tmp_path, staged_goal(deadline=f"{fastest * 0.9:.0f}s")))
    assert code == 1
    assert answer["conflict"] == ["time/meets-deadline"] and len(answer["stages"]) == 2
    # the stages shown are the fastest plans together, and the repair names the deadline they need
    assert answer["estimate"]["train_seconds"] == pytest.approx(fastest, rel=1e-6)
    [repair] = answer["repairs"]
    assert repair["change"].startswith("a deadline of at least ") and not repair["passes"]
    assert repair["estimate"]["train_seconds"] == pytest.approx(fastest, rel=1e-6)


def test_the_nanochat_pipeline_is_one_goal():
    answer = tplan.solve(tplan_root() / "examples" / "seed002-nanochat-stages.yaml")
    assert answer.status == "optimal"
    steps = {stage["name"]: stage["estimate"]["optimizer_steps"] for stage in answer.stages}
    assert steps["mid"] == pytest.approx(1700) and steps["sft"] == pytest.approx(460)   # the seed's iterations


def tplan_root():
    from pathlib import Path
    return Path(__file__).resolve().parent.parent


def test_each_stage_writes_its_engine_files_which_read_back_as_its_plan(tmp_path):
    code, answer = run_json("solve", write_goal(tmp_path, staged_goal()), "--emit", "hf", "-o", tmp_path / "out")
    assert code == 0
    for stage in answer["stages"]:
        main = tmp_path / "out" / stage["name"] / "hf" / "sft_config.yaml"
        assert str(main) in answer["emitted"]["files"]
        checked = tplan.check(main)  # with the stage's side file beside it
        assert checked.config == stage["config"] and checked.estimate == stage["estimate"]
