"""Repairs for a goal that cannot be met: each change re-solved, with the plan it gives.

Three kinds, each verified by a solve: widening one knob the goal narrowed to its full domain (more
GPUs, LoRA or QLoRA, an 8-bit optimizer, offload, a shorter context ...); changing what is rented or
trained (more nodes, another GPU kind with more memory and compute, fewer tokens by the deadline),
re-read as a goal of its own; and relaxing one rule of the conflict (the plan nearest to meeting it -
the smallest footprint for memory, the fastest for a deadline - and by how much the limit would have
to move). Changes that fit come first, best by the goal's objective.
"""

from __future__ import annotations

import dataclasses
import itertools

from . import catalog
from .errors import InputError
from .evaluate import Assessment, format_value
from .explain import config_json, estimate, knob_text
from .goal import Problem

OTHER_GPUS = 2            # other GPU kinds offered, with at least this one's memory and compute ...
GPUS_TRIED = 3            # ... among at most this many tried: the largest first for a memory conflict, else the fastest
MORE_NODES = (2,)         # node counts tried, as multiples of the goal's
TOKEN_MARGIN = 0.98       # fewer tokens: this share of what the fastest plan trains by the deadline
GOAL_KEYS = {"gpu": "hardware.gpu", "nodes": "hardware.nodes", "tokens": "data.tokens"}


@dataclasses.dataclass(frozen=True)
class Repair:
    change: str                 # what to change, in words
    text: str                   # the suggestion as the report prints it
    passes: bool                # the re-solved plan meets every rule of the goal
    problem: Problem
    assessment: Assessment
    goal_changes: dict = dataclasses.field(default_factory=dict)   # goal keys changed (hardware.gpu ...)

    def to_dict(self) -> dict:
        result = {"change": self.change, "passes": self.passes, "config": config_json(self.problem, self.assessment),
                  "estimate": estimate(self.problem, self.assessment)}
        if self.goal_changes:
            result["goal_changes"] = self.goal_changes
        return result


def repairs(problem: Problem, plan, budget, variant=None) -> list[Repair]:
    """The verified changes that make an infeasible goal feasible (widenings, and with ``variant`` -
    which reads the goal again with some of its keys replaced - other hardware or fewer tokens) or
    show how far each conflicting rule is from being met (relaxations), best first."""
    found = _widenings(problem, budget) + (_rented(problem, plan, budget, variant) if variant else [])
    found.sort(key=lambda repair: repair.assessment.values[problem.objective])
    return found + _relaxations(problem, plan, budget)


def _rented(problem: Problem, plan, budget, variant) -> list[Repair]:
    """More nodes, another GPU kind, or (against a deadline) fewer tokens: each a goal of its own."""
    inputs = problem.inputs
    changes = [(f"use {inputs['hardware.nodes'] * factor} nodes", {"nodes": inputs["hardware.nodes"] * factor})
               for factor in MORE_NODES]
    tokens = _tokens_by_deadline(problem, plan, budget)
    changes += [(f"train {format_value(tokens)} tokens (what fits by the deadline)", {"tokens": tokens})] if tokens else []
    gpus = [(f"rent {gpu} instead", {"gpu": gpu}) for gpu in _other_gpus(inputs, "memory/fits-gpu-memory" in plan.conflict)]
    found = [repair for repair in (_resolved(change, keys, variant, budget) for change, keys in changes) if repair]
    rented = (repair for repair in (_resolved(change, keys, variant, budget) for change, keys in gpus) if repair)
    return found + list(itertools.islice(rented, OTHER_GPUS))   # stops solving once enough GPUs fit


def _resolved(change: str, keys: dict, variant, budget) -> Repair | None:
    """The goal with ``keys`` changed, solved: a repair when it has a plan."""
    from .search import solve  # OR-Tools loads only when a goal is solved

    try:
        problem = variant(keys)
    except InputError:      # e.g. a price map without the other GPU: not a change this goal can take
        return None
    other = solve(problem, budget, explain=False, conflict=False, certify=False)
    if other.assessment is None:
        return None
    values = other.assessment.values
    cost = (f"cost {format_value(values['cost'])}" if problem.inputs["hardware.price_per_gpu_hour"]
            else f"{format_value(values['gpu_hours'])} GPU-hours (no list price)")
    return Repair(change, f"{change} fits: {format_value(values['train_seconds'], 'time')}, {cost} "
                          f"({knob_text(other.assessment.config)})",
                  True, problem, other.assessment, {GOAL_KEYS[key]: value for key, value in keys.items()})


def _other_gpus(inputs: dict, short_of_memory: bool) -> list[str]:
    """Catalog GPUs with at least this one's memory and 16-bit peak: the most memory first when memory
    rules plans out, else the highest 16-bit peak; the cheaper list price first among equals."""
    here = catalog.gpus()[inputs["gpu.id"]]
    prices = catalog.list_prices()["prices"]
    larger = [gpu for gpu, entry in catalog.gpus().items()
              if gpu != inputs["gpu.id"] and entry["memory_gib"] >= here["memory_gib"]
              and entry["peak_tflops"].get("bf16", 0) >= here["peak_tflops"].get("bf16", 0)]

    def rank(gpu: str) -> tuple:
        entry = catalog.gpus()[gpu]
        size = entry["memory_gib"] if short_of_memory else entry["peak_tflops"].get("bf16", 0)
        return -size, prices.get(gpu, float("inf")), gpu
    return sorted(larger, key=rank)[:GPUS_TRIED]


def _tokens_by_deadline(problem: Problem, plan, budget) -> float:
    """Tokens the fastest plan trains by the deadline, when the deadline is what rules plans out."""
    from .search import solve, with_rules  # OR-Tools loads only when a goal is solved

    deadline = problem.inputs["goal.deadline_seconds"]
    if "time/meets-deadline" not in plan.conflict or not deadline:
        return 0.0
    relaxed = with_rules(problem, {c.id for c in problem.rules.constraints} - {"time/meets-deadline"})
    fastest = solve(relaxed, budget, explain=False, conflict=False, certify=False).assessment
    return float(f"{deadline * fastest.values['tokens_per_second'] * TOKEN_MARGIN:.3g}") if fastest else 0.0


def _relaxations(problem: Problem, plan, budget) -> list[Repair]:
    from .search import solve, with_rules  # OR-Tools loads only when a goal is solved

    found = []
    nearest = {constraint.id: constraint.nearest for constraint in problem.rules.constraints}
    for rule in plan.conflict:
        relaxed = with_rules(problem, {c.id for c in problem.rules.constraints} - {rule})
        if nearest.get(rule):  # the plan nearest to meeting the rule, not the best one that ignores it
            relaxed = dataclasses.replace(relaxed, objective=nearest[rule], objective_name=nearest[rule])
        other = solve(relaxed, budget, explain=False, conflict=False, settle=False)   # the nearest, as found
        if other.assessment is None:
            continue
        assessment = problem.evaluator().assess(other.assessment.config)
        broken = [v.message for v in assessment.violations if v.rule == rule]
        which = f"the plan nearest to it (least {nearest[rule]})" if nearest.get(rule) else "the best plan"
        change = (f"relax {rule}: {broken[0]}" if broken else f"drop {rule}")
        found.append(Repair(change, f"without {rule}, {which} ({knob_text(assessment.config)}) "
                                    f"{broken[0] if broken else 'passes every other rule'}",
                            assessment.passes, problem, assessment))
    return found


def _widenings(problem: Problem, budget) -> list[Repair]:
    from .search import solve  # OR-Tools loads only when a goal is solved

    found = []
    for knob in problem.rules.knobs.values():
        wider = tuple(value for value in dict.fromkeys(problem.domains[knob.name] + knob.default)
                      if value in problem.runnable.get(knob.name, (value,)))  # what the engines written for run
        if len(wider) == len(problem.domains[knob.name]):
            continue
        other = solve(dataclasses.replace(problem, domains={**problem.domains, knob.name: wider}),
                      budget, explain=False, conflict=False, certify=False)
        if other.assessment is not None:
            value = other.assessment.config[knob.name]
            found.append(Repair(f"allow {knob.name} {value}",
                                f"allowing {knob.name} in {list(wider)} fits: {knob.name} = {value} "
                                f"({knob_text(other.assessment.config)})", True, problem, other.assessment))
    return found
