"""Repairs for a goal that cannot be met: each change re-solved, with the plan it gives.

Two kinds, each verified by a solve: relaxing one rule of the conflict (the plan nearest to
meeting it - the smallest footprint for memory, the fastest for a deadline - and by how much the
limit would have to move), and widening one knob the goal narrowed to its full domain (more GPUs,
LoRA or QLoRA, an 8-bit optimizer, offload, a shorter context ...), which gives a plan that passes
every rule. Widenings that fit come first, best by the goal's objective.
"""

from __future__ import annotations

import dataclasses

from .evaluate import Assessment
from .explain import config_json, estimate, knob_text
from .goal import Problem


@dataclasses.dataclass(frozen=True)
class Repair:
    change: str                 # what to change, in words
    text: str                   # the suggestion as the report prints it
    passes: bool                # the re-solved plan meets every rule of the goal
    problem: Problem
    assessment: Assessment

    def to_dict(self) -> dict:
        return {"change": self.change, "passes": self.passes, "config": config_json(self.problem, self.assessment),
                "estimate": estimate(self.problem, self.assessment)}


def repairs(problem: Problem, plan, budget) -> list[Repair]:
    """The verified changes that make an infeasible goal feasible (widenings) or show how far each
    conflicting rule is from being met (relaxations), best first."""
    found = _widenings(problem, budget)
    found.sort(key=lambda repair: repair.assessment.values[problem.objective])
    return found + _relaxations(problem, plan, budget)


def _relaxations(problem: Problem, plan, budget) -> list[Repair]:
    from .search import solve, with_rules  # OR-Tools loads only when a goal is solved

    found = []
    nearest = {constraint.id: constraint.nearest for constraint in problem.rules.constraints}
    for rule in plan.conflict:
        relaxed = with_rules(problem, {c.id for c in problem.rules.constraints} - {rule})
        if nearest.get(rule):  # the plan nearest to meeting the rule, not the best one that ignores it
            relaxed = dataclasses.replace(relaxed, objective=nearest[rule], objective_name=nearest[rule])
        other = solve(relaxed, budget, explain=False, conflict=False)
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
        wider = tuple(dict.fromkeys(problem.domains[knob.name] + knob.default))
        if len(wider) == len(problem.domains[knob.name]):
            continue
        other = solve(dataclasses.replace(problem, domains={**problem.domains, knob.name: wider}),
                      budget, explain=False, conflict=False)
        if other.assessment is not None:
            value = other.assessment.config[knob.name]
            found.append(Repair(f"allow {knob.name} {value}",
                                f"allowing {knob.name} in {list(wider)} fits: {knob.name} = {value} "
                                f"({knob_text(other.assessment.config)})", True, problem, other.assessment))
    return found
