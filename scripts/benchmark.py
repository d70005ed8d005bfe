"""Benchmark: CP-SAT solve time as the search space grows, beside exhaustive evaluation, and the
CPU seconds of whole commands as a user runs them.

Prints one row per goal: combinations, compile and solve seconds, exhaustive seconds (measured
where the space is small, otherwise extrapolated from the evaluator's per-config time) and
the ratio; then one row per command (`tplan --help`, `check`, `solve` of a one-node and a
1,024-GPU all-knob goal, a 512-GPU goal that minimises cost, an infeasible goal with its conflict
and repairs, and two 70B goals on 1,024 GPUs whose deadline lies where the encoding is coarse) with
its CPU seconds (user + system of the process) and, for solves, the ratio to exhaustive evaluation.
Run: python scripts/benchmark.py (docs/benchmark.md records a run and its machine).
"""

from __future__ import annotations

import itertools
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from tplan.goal import load_problem
from tplan.search import solve

MEASURE_EXHAUSTIVE_UP_TO = 20000
BASE = {"model": "llama-3.1-8b", "task": "finetune", "data": {"tokens": 2e9},
        "hardware": {"gpu": "a100-80gb", "gpus_per_node": 8, "nodes": 1}, "deadline": "48h"}
CASES = [
    ("pinned except micro_batch", {"precision": "bf16", "micro_batch": [1, 2, 4, 8], "context": 2048,
                                   "zero_stage": 3, "offload": "none", "grad_checkpointing": True,
                                   "lora_rank": 0, "quantization": "none", "gpus": 8, "tp": 1, "pp": 1,
                                   "grad_accum": 1}),
    ("one node, memory knobs", {"context": 2048, "gpus": 8, "tp": 1, "pp": 1, "grad_accum": [1, 4],
                                "lora_rank": [0, 16], "quantization": "none"}),
    ("one node, every knob", {"context": [2048, 4096]}),
    ("two nodes, every knob", {"context": [2048, 4096], "_nodes": 2}),
    ("eight nodes, every knob", {"context": [1024, 2048, 4096], "_nodes": 8}),
]


def problem_for(folder: Path, name: str, knobs: dict):
    goal = dict(BASE, hardware=dict(BASE["hardware"], nodes=knobs.pop("_nodes", 1)), knobs=knobs)
    path = folder / f"{name.replace(' ', '_').replace(',', '')}.yaml"
    path.write_text(yaml.safe_dump(goal))
    return load_problem(path)


def exhaustive_seconds(problem, combinations: int) -> tuple[float, bool]:
    evaluator = problem.evaluator()
    configs = itertools.product(*problem.domains.values())
    sample = combinations if combinations <= MEASURE_EXHAUSTIVE_UP_TO else 2000
    started = time.perf_counter()
    for combination in itertools.islice(configs, sample):
        evaluator.assess(dict(zip(problem.domains, combination)))
    elapsed = time.perf_counter() - started
    return elapsed * combinations / sample, sample == combinations


COMMAND_GOALS = {
    "one node, every knob": dict(BASE, knobs={}),
    "1,024 GPUs, every knob": dict(BASE, task="pretrain", data={"tokens": 2e11},
                                   hardware={"gpu": "h100-sxm", "gpus_per_node": 8, "nodes": 128}, deadline="30d"),
    "512 GPUs, cost objective": {"model": "llama-3.1-70b", "task": "pretrain", "data": {"tokens": 1e12},
                                 "hardware": {"gpu": "h100-sxm", "gpus_per_node": 8, "nodes": 64},
                                 "deadline": "60d", "objective": "cost"},
    "infeasible (full 7B on one 24 GB GPU)": {"model": "llama-2-7b", "data": {"tokens": 1e8},
                                               "hardware": {"gpu": "rtx-4090"},
                                               "knobs": {"lora_rank": 0, "offload": "none"}},
    # the slow path: a deadline far below the range the step time's bounds span (docs/benchmark.md)
    "1,024 GPUs, 70B by cost, 30-day deadline": {"model": "llama-3.1-70b", "task": "pretrain", "data": {"tokens": 2e12},
                                                 "hardware": {"gpu": "h100-sxm", "gpus_per_node": 8, "nodes": 128},
                                                 "deadline": "30d", "objective": "cost"},
    "infeasible (1,024 GPUs, 70B in one day)": {"model": "llama-3.1-70b", "task": "pretrain", "data": {"tokens": 2e12},
                                                "hardware": {"gpu": "h100-sxm", "gpus_per_node": 8, "nodes": 128},
                                                "deadline": "1d"},
}
CONFIG = dict(BASE, knobs={"precision": "bf16", "micro_batch": 4, "grad_accum": 2, "context": 2048, "zero_stage": 3,
                           "offload": "none", "grad_checkpointing": True, "lora_rank": 0, "quantization": "none",
                           "gpus": 8, "tp": 1, "pp": 1})


def command_seconds(*args: str) -> float:
    """CPU seconds (user + system) of one `tplan` command in a fresh process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, "-m", "tplan", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def commands(folder: Path) -> None:
    print(f"\n{'command':<56}{'CPU s':>8}{'exhaustive s':>15}{'ratio':>9}")
    config = folder / "config.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    rows = [("tplan --help", command_seconds("--help"), None), ("tplan check config.yaml",
                                                                 command_seconds("check", str(config)), None)]
    for name, goal in COMMAND_GOALS.items():
        path = folder / f"command-{len(rows)}.yaml"
        path.write_text(yaml.safe_dump(goal))
        problem = load_problem(path)
        exhaustive, _ = exhaustive_seconds(problem, math.prod(len(values) for values in problem.domains.values()))
        rows.append((f"tplan solve: {name}", command_seconds("solve", str(path)), exhaustive))
    for name, seconds, exhaustive in rows:
        ratio = f"{exhaustive:>14.1f}*{exhaustive / seconds:>9.0f}" if exhaustive else ""
        print(f"{name:<56}{seconds:>8.2f}{ratio}")
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")


def main() -> int:
    print(f"{'goal':<28}{'combinations':>14}{'solve s':>10}{'exhaustive s':>15}{'ratio':>9}  status")
    with tempfile.TemporaryDirectory() as folder:
        for name, knobs in CASES:
            problem = problem_for(Path(folder), name, dict(knobs))
            combinations = math.prod(len(values) for values in problem.domains.values())
            started = time.perf_counter()
            plan = solve(problem, time_limit=120, explain=False)
            solve_seconds = time.perf_counter() - started
            exhaustive, measured = exhaustive_seconds(problem, combinations)
            print(f"{name:<28}{combinations:>14,}{solve_seconds:>10.2f}{exhaustive:>14.1f}{'' if measured else '*'}"
                  f"{exhaustive / solve_seconds:>9.0f}  {plan.status}")
        commands(Path(folder))
    print("* extrapolated from the evaluator's time on 2,000 configurations")
    return 0


if __name__ == "__main__":
    sys.exit(main())
