"""Trade-offs: the plans no other plan beats on time, memory per GPU and cost at once.

Each round solves the goal again with one more rule: the next plan must beat every plan found so
far on at least one of the three (and must not be one of them). The rounds stop when no plan is
left, so every non-dominated plan is found (up to the encoding's resolution, then the evaluator
judges), or at MAX_PLANS. The evaluator's values decide which plans are kept.
"""

from __future__ import annotations

import dataclasses

from . import expr
from .evaluate import Assessment
from .goal import Problem
from .packs import Constraint

AXES = ("train_seconds", "memory_per_gpu", "cost")   # what a trade-off trades: time, memory per GPU, money
MAX_PLANS = 40


def front(problems: list[Problem], budget) -> tuple[list[tuple[Problem, Assessment]], bool]:
    """The non-dominated plans over every GPU the goal lists (fastest first, each with its GPU's
    problem) and whether every GPU's rounds ran to the end."""
    from .search import solve  # OR-Tools loads only when a goal is solved

    plans: list[tuple[Problem, Assessment]] = []
    complete = True
    for problem in problems:
        found: list[Assessment] = []
        while True:
            if len(found) >= MAX_PLANS or budget.left() <= 0:
                complete = False
                break
            plan = solve(_beyond(problem, found), budget, explain=False, conflict=False)
            if plan.assessment is None:
                complete = complete and plan.status == "infeasible"
                break
            found.append(plan.assessment)
        plans += [(problem, assessment) for assessment in found]
    return non_dominated(plans, key=lambda pair: pair[1]), complete


def non_dominated(items: list, key=lambda item: item) -> list:
    """The items whose plan (``key(item)``) no other plan matches or beats on every axis while
    beating it on one, fastest first; of plans equal on every axis, the first found."""
    kept: list = []
    for item in items:
        mine = _point(key(item))
        if not any(_dominates(_point(key(other)), mine) or _point(key(other)) == mine for other in kept):
            kept = [other for other in kept if not _dominates(mine, _point(key(other)))] + [item]
    return sorted(kept, key=lambda item: _point(key(item)))


def _point(plan: Assessment) -> tuple:
    return tuple(float(plan.values[axis]) for axis in AXES)


def _dominates(a: tuple, b: tuple) -> bool:
    return all(x <= y for x, y in zip(a, b)) and a != b


def _beyond(problem: Problem, found: list[Assessment]) -> Problem:
    """The goal with one rule per plan found: beat it on some axis, and be another configuration."""
    extra = []
    for index, plan in enumerate(found):
        better = " or ".join(f"{axis} < {float(plan.values[axis])!r}" for axis in AXES)
        same = " and ".join(f"{knob} == {_literal(value)}" for knob, value in plan.config.items())
        text = f"({better}) and not ({same})"
        extra.append(Constraint(f"pareto/beyond-{index + 1}", expr.parse(text, "<pareto>", f"round {index + 1}"),
                                "dominated by a plan already found", "error", "<pareto>", f"round {index + 1}"))
    rules = dataclasses.replace(problem.rules, constraints=[*problem.rules.constraints, *extra])
    return dataclasses.replace(problem, rules=rules)


def _literal(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return f"'{value}'" if isinstance(value, str) else repr(value)
