"""Repairs for a goal that cannot be met: each change re-solved, with the plan it gives.

Three kinds, each verified by a solve: widening one knob the goal narrowed, to its default domain
and the values a knob offers only for repairs (more GPUs, LoRA or QLoRA, an 8-bit or paged optimizer,
bf16-only weights, offload ...), and the longest halving of the goal's context that fits; changing
what is rented or trained (more nodes, another GPU kind chosen by what rules plans out, fewer tokens
by the deadline or within the budget, the tokens a synthetic-data pressure needs), re-read as a goal
of its own; and relaxing one rule of the conflict (the plan nearest to meeting it - the smallest
footprint for memory, the fastest for a deadline, the cheapest for a budget - and by how much the
limit would have to move). Changes that fit come first, best by the goal's objective.
"""

from __future__ import annotations

import dataclasses
import itertools

from . import catalog, expr
from .errors import InputError
from .evaluate import Assessment, format_value
from .explain import config_json, estimate, knob_text
from .goal import Problem

OTHER_GPUS = 2            # other GPU kinds offered ...
GPUS_TRIED = 3            # ... among at most this many tried, in the order _other_gpus gives
MORE_NODES = (2, 4)       # node counts tried, as multiples of the goal's
TOKEN_MARGIN = 0.98       # fewer tokens: this share of what fits the deadline or budget
MIN_CONTEXT = 256         # the shortest context a shorter-context repair tries
REPAIR_CUTS = 2           # plans the evaluator may reject before a repair's search gives up (search.solve)
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
    nearest = {rule: _nearest_without(problem, rule, budget) for rule in plan.conflict}
    found = _widenings(problem, budget) + (_rented(problem, plan, budget, variant, nearest) if variant else [])
    found.sort(key=lambda repair: repair.assessment.values[problem.objective])
    return found + _relaxations(problem, nearest)


def _rented(problem: Problem, plan, budget, variant, nearest: dict) -> list[Repair]:
    """More nodes, another GPU kind, or (against a deadline) fewer tokens: each a goal of its own."""
    inputs = problem.inputs
    helped = {"time/meets-deadline", "memory/fits-gpu-memory"} & set(plan.conflict)  # what more nodes can help
    changes = [(f"use {inputs['hardware.nodes'] * factor} nodes", {"nodes": inputs["hardware.nodes"] * factor})
               for factor in MORE_NODES if helped]
    floor = _tokens_for_pressure(problem, plan)
    changes += [(f"train {format_value(floor)} tokens (what the synthetic pressure needs)", {"tokens": floor})] \
        if floor else []
    tokens = _fewer_tokens(problem, plan, budget, nearest)
    changes += [(f"train {format_value(tokens)} tokens (what fits the "
                 f"{' and '.join(rule.split('-', 1)[1] for rule, _, _ in _tokens_within_limits(problem, plan))})",
                 {"tokens": tokens})] if tokens else []
    gpus = [(f"rent {gpu} instead", {"gpu": gpu}) for gpu in _other_gpus(inputs, plan.conflict)]
    found = [repair for repair in (_resolved(change, keys, variant, budget) for change, keys in changes) if repair]
    rented = (repair for repair in (_resolved(change, keys, variant, budget) for change, keys in gpus) if repair)
    return found + list(itertools.islice(rented, OTHER_GPUS))   # stops solving once enough GPUs fit


def _resolved(change: str, keys: dict, variant, budget) -> Repair | None:
    """The goal with ``keys`` changed, solved: a repair when it has a plan."""
    try:
        problem = variant(keys)
    except InputError:      # e.g. a price map without the other GPU: not a change this goal can take
        return None
    other = _solve(problem, budget)
    if other.assessment is None:
        return None
    return Repair(change, f"{change} fits: {_outcome(problem, other.assessment)} ({knob_text(other.assessment.config)})",
                  True, problem, other.assessment, {GOAL_KEYS[key]: value for key, value in keys.items()})


def _solve(problem: Problem, budget, **settings):
    """A repair's search: no explanation and no conflict, the plan CP-SAT finds rather than a certified
    optimum, and at most REPAIR_CUTS plans the evaluator rejects; ``settings`` override these."""
    from .search import solve  # OR-Tools loads only when a goal is solved

    return solve(problem, budget, **{"explain": False, "conflict": False, "certify": False,
                                     "max_cuts": REPAIR_CUTS, **settings})


def _outcome(problem: Problem, assessment: Assessment) -> str:
    """A repaired plan's time and cost (GPU-hours where the GPU has no price)."""
    values = assessment.values
    cost = (f"cost {format_value(values['cost'])}" if problem.inputs["hardware.price_per_gpu_hour"]
            else f"{format_value(values['gpu_hours'])} GPU-hours (no list price)")
    return f"{format_value(values['train_seconds'], 'time')}, {cost}"


def _other_gpus(inputs: dict, conflict: list[str]) -> list[str]:
    """Catalog GPUs to rent instead, by what rules plans out: for memory, those with more memory, the
    most first; for a budget, the priced ones cheapest per 16-bit TFLOP first; else those with at least
    this one's memory and 16-bit peak, the cheapest list price first (unpriced last, fastest first)."""
    gpus, here = catalog.gpus(), catalog.gpus()[inputs["gpu.id"]]
    prices = catalog.list_prices()["prices"]
    short_of_memory, over_budget = "memory/fits-gpu-memory" in conflict, "time/within-budget" in conflict

    def peak(gpu: str) -> float:
        return gpus[gpu]["peak_tflops"].get("bf16", 0)

    def candidate(gpu: str) -> bool:
        if short_of_memory:
            return gpus[gpu]["memory_gib"] > here["memory_gib"]
        if over_budget:
            return gpu in prices and peak(gpu) > 0
        return gpus[gpu]["memory_gib"] >= here["memory_gib"] and peak(gpu) >= here["peak_tflops"].get("bf16", 0)

    def rank(gpu: str) -> tuple:
        price = prices.get(gpu, float("inf"))
        if short_of_memory:
            return -gpus[gpu]["memory_gib"], price, gpu
        return (price / peak(gpu), gpu) if over_budget else (price, -peak(gpu), gpu)
    return sorted((gpu for gpu in gpus if gpu != inputs["gpu.id"] and candidate(gpu)), key=rank)[:GPUS_TRIED]


def _tokens_for_pressure(problem: Problem, plan) -> float:
    """The tokens whose synthetic part reaches the pressure level's floor (rules/synthetic.yaml), when
    too few tokens is what rules plans out; 0 otherwise."""
    if "synthetic/enough-tokens" not in plan.conflict:
        return 0.0
    evaluator = problem.evaluator()
    have, floor = (evaluator.constant(expr.parse(text, "rules/synthetic.yaml", "enough-tokens"))
                   for text in ("synthetic_tokens", "pressure_min_tokens[pressure]"))
    return float(problem.inputs["data.tokens"] * floor / have) if have else 0.0


def _tokens_within_limits(problem: Problem, plan) -> list[tuple[str, str, str]]:
    """(rule, objective, goal input) of the limits that rule plans out and fewer tokens can meet: the
    deadline (the fastest plan sets how many tokens fit) and the budget (the cheapest plan does)."""
    limits = [("time/meets-deadline", "train_seconds", "goal.deadline_seconds"),
              ("time/within-budget", "cost", "goal.budget")]
    return [(rule, objective, limit) for rule, objective, limit in limits
            if rule in plan.conflict and problem.inputs[limit]]


def _fewer_tokens(problem: Problem, plan, budget, nearest: dict) -> float:
    """The tokens that fit the deadline and the budget that rule plans out (TOKEN_MARGIN below what
    the fastest, or the cheapest, plan trains within each), or 0 when neither does. With one of them
    ruling plans out, the fastest (cheapest) plan is the one nearest to meeting it (``nearest``)."""
    from .search import with_rules  # OR-Tools loads only when a goal is solved

    limits = _tokens_within_limits(problem, plan)
    if not limits:
        return 0.0
    relaxed = with_rules(problem, {c.id for c in problem.rules.constraints} - {rule for rule, _, _ in limits})
    fitting = []
    for rule, objective, limit in limits:
        best = nearest[rule] if len(limits) == 1 else \
            _solve(dataclasses.replace(relaxed, objective=objective, objective_name=objective), budget).assessment
        if best is None or not best.values[objective]:
            return 0.0
        fitting.append(problem.inputs[limit] / best.values[objective] * best.values["training_tokens"])
    return float(f"{min(fitting) * TOKEN_MARGIN:.3g}")


def _nearest_without(problem: Problem, rule: str, budget) -> Assessment | None:
    """The plan nearest to meeting ``rule`` (least of its ``nearest`` quantity; else the best plan) among
    those that pass every other rule, judged by all of them; None when there is none."""
    from .search import with_rules  # OR-Tools loads only when a goal is solved

    relaxed = with_rules(problem, {c.id for c in problem.rules.constraints} - {rule})
    nearest = _nearest_quantity(problem, rule)
    if nearest:
        relaxed = dataclasses.replace(relaxed, objective=nearest, objective_name=nearest)
    other = _solve(relaxed, budget, certify=True, settle=False)   # the nearest, as found
    return None if other.assessment is None else problem.evaluator().assess(other.assessment.config)


def _nearest_quantity(problem: Problem, rule: str) -> str | None:
    """The derived quantity whose least value brings a plan nearest to meeting ``rule`` (its pack's
    ``nearest``), if it names one."""
    return next((constraint.nearest for constraint in problem.rules.constraints if constraint.id == rule), None)


def _relaxations(problem: Problem, nearest_plans: dict) -> list[Repair]:
    """For each rule of the conflict, the plan nearest to meeting it: how far it is from the rule."""
    found = []
    for rule, assessment in nearest_plans.items():
        if assessment is None:
            continue
        broken = [v.message for v in assessment.violations if v.rule == rule]
        nearest = _nearest_quantity(problem, rule)
        which = f"the plan nearest to it (least {nearest})" if nearest else "the best plan"
        change = (f"relax {rule}: {broken[0]}" if broken else f"drop {rule}")
        found.append(Repair(change, f"without {rule}, {which} ({knob_text(assessment.config)}) "
                                    f"{broken[0] if broken else 'passes every other rule'}",
                            assessment.passes, problem, assessment))
    return found


def _longest_context(problem: Problem, budget) -> list[Repair]:
    """The longest context, halving the goal's shortest, that has a plan (a repair that shortens the
    context should keep as much of it as fits, not jump to the default)."""
    context = min(problem.domains["context"]) // 2
    while context >= MIN_CONTEXT:
        other = _solve(dataclasses.replace(problem, domains={**problem.domains, "context": (context,)}), budget)
        if other.assessment is not None:
            return [Repair(f"use context {context}", f"context {context} (the longest halving that fits) fits: "
                                                     f"{_outcome(problem, other.assessment)} "
                                                     f"({knob_text(other.assessment.config)})",
                           True, problem, other.assessment)]
        context //= 2
    return []


def _widenings(problem: Problem, budget) -> list[Repair]:
    found = _longest_context(problem, budget) if "context" in problem.domains else []
    for knob in problem.rules.knobs.values():
        wider = tuple(value for value in dict.fromkeys(problem.domains[knob.name] + knob.default + knob.repairs)
                      if value in problem.runnable.get(knob.name, (value,)))  # what the engines written for run
        if len(wider) == len(problem.domains[knob.name]):
            continue
        other = _solve(dataclasses.replace(problem, domains={**problem.domains, knob.name: wider}), budget)
        if other.assessment is not None:
            value = other.assessment.config[knob.name]
            found.append(Repair(f"allow {knob.name} {value}",
                                f"allowing {knob.name} in {list(wider)} fits: {knob.name} = {value}, "
                                f"{_outcome(problem, other.assessment)} ({knob_text(other.assessment.config)})",
                                True, problem, other.assessment))
    return found
