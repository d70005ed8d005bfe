"""The Python API: ``tplan.solve`` and ``tplan.check`` for notebooks and scripts.

Both take a path or a dict (a dict's relative paths - packs, config.json - are read from the
working directory) and return an Answer whose fields mirror the JSON contract of
`tplan solve --json` / `tplan check --json`. Bad input raises tplan.InputError with the same
message the command line prints. The command line is built on the same functions.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from .emit.readback import engine_of, engine_problem
from .errors import InputError
from .explain import answer, config_json, estimate
from .goal import Problem, changed, gpu_choices, load_problem
from .load import Document, from_data, read
from .stages import is_staged, plan_stages


@dataclass(frozen=True)
class Answer:
    """One answer of the JSON contract: status is optimal | feasible | infeasible | unknown for a
    goal, pass | fail for a config."""

    status: str
    config: dict | None
    estimate: dict | None
    violations: list[dict] = field(default_factory=list)
    binding: list[str] = field(default_factory=list)
    conflict: list[str] = field(default_factory=list)
    binding_details: list[dict] = field(default_factory=list)   # per binding rule: headroom, the plan it stops
    runner_up: dict | None = None             # the next best plan one knob away (config, estimate)
    suggestions: list[str] = field(default_factory=list)
    gpu_choices: list[dict] = field(default_factory=list)
    repairs: list[dict] = field(default_factory=list)
    pareto: list[dict] | None = None          # with solve(pareto=True): each trade-off's config and estimate
    pareto_complete: bool | None = None
    stages: list[dict] | None = None          # a staged goal: each stage's name and answer
    gap: float | None = None                  # a feasible plan: at most this share above the best (proven)

    @property
    def ok(self) -> bool:
        """A plan was found, or the config passes every rule (exit code 0 on the command line)."""
        return self.status in ("optimal", "feasible", "pass")

    def to_dict(self) -> dict:
        """The JSON object `tplan ... --json` prints."""
        result = {"status": self.status, "config": self.config, "estimate": self.estimate,
                  "violations": self.violations, "binding": self.binding, "conflict": self.conflict}
        if self.gap is not None:
            result["gap"] = self.gap
        if self.binding_details:
            result["binding_details"] = self.binding_details
        if self.runner_up is not None:
            result["runner_up"] = self.runner_up
        if self.suggestions:
            result["suggestions"] = self.suggestions
        if self.gpu_choices:
            result["gpu_choices"] = self.gpu_choices
        if self.repairs:
            result["repairs"] = self.repairs
        if self.pareto is not None:
            result["pareto"], result["pareto_complete"] = self.pareto, self.pareto_complete
        if self.stages is not None:
            result["stages"] = self.stages
        return result


def solve(goal: dict | str | Path, *, rules: tuple = (), time_limit: float = 60.0, explain: bool = True,
          pareto: bool = False) -> Answer:
    """The fastest plan of ``goal`` that fits (or why none does), as `tplan solve --json` answers;
    ``pareto`` adds the plans no other beats on time, memory per GPU and cost at once."""
    planned = plan_goal(goal, rules, time_limit, explain, pareto=pareto)
    return Answer(**planned.answer())


def check(config: dict | str | Path | Document, *, rules: tuple = (), goal: dict | str | Path | None = None) -> Answer:
    """``config`` (a tplan config, or an engine's config - DeepSpeed JSON, Trainer arguments or TRL
    config, accelerate, axolotl, torchtitan, torchtune - with ``goal`` for what it does not carry)
    checked against every rule, as `tplan check --json` answers."""
    problem = config_problem(config, goal, rules)
    assessment = problem.evaluator().assess({knob: values[0] for knob, values in problem.domains.items()})
    return Answer(**answer(problem, "pass" if assessment.passes else "fail", assessment))


@dataclass
class Planned:
    """What `solve` found for a goal: the GPU answered (its problem), its plan, verified repairs for
    an infeasible goal, each listed GPU's best, and the trade-off plans when asked for."""

    problem: Problem
    plan: object
    repairs: list            # repair.Repair, best first, for an infeasible goal
    gpu_choices: list[dict]
    pareto: list[tuple] | None = None        # (problem, assessment) per non-dominated plan
    pareto_complete: bool = False

    def answer(self) -> dict:
        """The JSON contract of `tplan solve --json`."""
        plan = self.plan
        result = answer(self.problem, plan.status, plan.assessment, plan.binding, plan.conflict,
                        [repair.text for repair in self.repairs], self.gpu_choices, plan.binding_details,
                        plan.runner_up, plan.gap)
        if self.repairs:
            result["repairs"] = [repair.to_dict() for repair in self.repairs]
        if self.pareto is not None:
            result["pareto"] = [{"config": config_json(problem, assessment), "estimate": estimate(problem, assessment)}
                                for problem, assessment in self.pareto]
            result["pareto_complete"] = self.pareto_complete
        return result


def plan_goal(goal, rules: tuple, time_limit, explain: bool, prepare=None, pareto: bool = False):
    """What `solve` answers for a goal (a Planned, or a stages.Staged for a goal with stages);
    ``time_limit`` is seconds or a shared solve.Budget;
    ``prepare(problem)`` runs on each problem read, repairs' included, before it is searched (the
    command line checks its outputs and narrows the knobs to what the engines it writes for run).
    A goal listing several GPUs is planned once per GPU and answered with the best by its objective."""
    from . import pareto as trade_offs
    from .repair import repairs
    from .search import Budget, budget_of, solve as search  # OR-Tools loads only when a goal is solved

    budget: Budget = budget_of(time_limit)
    document = _source(goal)
    document = document if isinstance(document, Document) else read(document)
    if is_staged(document):
        if pareto:
            raise InputError(document.path, document.where(("stages",)), "a goal without stages for --pareto "
                                                                         "(solve each stage's goal with --pareto)")
        return plan_stages(document, lambda stage: plan_goal(stage, rules, budget, explain, prepare),
                           lambda problems: trade_offs.front(problems, budget))

    def problem_of(choice: Document) -> Problem:
        problem = load_problem(choice, extra_rules=tuple(rules))
        if prepare:
            prepare(problem)
        return problem

    problems = [problem_of(choice) for choice in gpu_choices(document)]
    unpriced = [each.inputs["gpu.id"] for each in problems if not each.inputs["hardware.price_per_gpu_hour"]]
    if len(problems) > 1 and (problems[0].objective == "cost" or pareto) and unpriced:  # money against GPU-hours
        raise InputError(document.path, document.where(("hardware", "gpu")),
                         f"a price for each GPU compared by cost ({', '.join(unpriced)} {'has' if len(unpriced) == 1 else 'have'} no list price in "
                         f"rules/catalog/prices.yaml: give hardware.price_per_gpu_hour, a number or a map by GPU id)")
    if len(problems) == 1:
        plans = [search(problems[0], budget, explain=explain)]
    else:  # compare the GPUs first; explain (binding rules, conflicts) only the one answered
        plans = [search(problem, budget, explain=False, conflict=False) for problem in problems]
    problem, plan = best_choice(problems, plans)
    if len(problems) > 1 and (explain or plan.assessment is None):
        again = search(problem, budget, explain=explain)
        plan = replace(plan, binding=again.binding, conflict=again.conflict, binding_details=again.binding_details,
                       runner_up=again.runner_up)
    hints = repairs(problem, plan, budget, lambda changes: problem_of(
        changed(document, problem.inputs["gpu.id"], changes))) \
        if explain and plan.status == "infeasible" else []
    choices = [{"gpu": each.inputs["gpu.id"], "status": found.status,
                problem.objective_name: found.assessment.values[each.objective] if found.assessment else None}
               for each, found in zip(problems, plans)] if len(problems) > 1 else []
    planned = Planned(problem, plan, hints, choices)
    if pareto:
        planned.pareto, planned.pareto_complete = trade_offs.front(problems, budget)
    return planned


def best_choice(problems: list[Problem], plans: list) -> tuple:
    """The GPU whose plan is best by the objective (the first listed on a tie). Its plan is proven
    best over all of them only if every GPU's search was proven: else it is "feasible"."""
    found = [(plan.assessment.values[problem.objective], index) for index, (problem, plan)
             in enumerate(zip(problems, plans)) if plan.assessment is not None]
    if not found:
        return problems[0], plans[0]
    index = min(found)[1]
    plan = plans[index]
    if plan.status == "optimal" and any(other.status not in ("optimal", "infeasible") for other in plans):
        plan = replace(plan, status="feasible")
    bounds = [other.bound for other in plans if other.status != "infeasible"]  # each GPU's proof
    plan = replace(plan, bound=None if None in bounds else min(bounds))
    return problems[index], plan.with_gap(problems[index].objective)


def config_problem(config, goal, rules: tuple) -> Problem:
    """A tplan config, or an engine's config whose hardware and data (and model, where it names
    none) come from ``goal`` or from NAME.tplan.yaml beside it."""
    if isinstance(config, dict):
        return load_problem(_source(config), pinned=True, extra_rules=tuple(rules))
    document = config if isinstance(config, Document) else read(config)
    if engine_of(document) is None:
        return load_problem(document, pinned=True, extra_rules=tuple(rules))
    base = _source(goal) if goal is not None else None
    return engine_problem(document, read(base) if isinstance(base, (str, Path)) else base, tuple(rules))


def _source(goal) -> str | Path | Document:
    return from_data(goal, "<goal dict>") if isinstance(goal, dict) else goal
