"""The Python API: ``tplan.solve`` and ``tplan.check`` for notebooks and scripts.

Both take a path or a dict (a dict's relative paths - packs, config.json - are read from the
working directory) and return an Answer whose fields mirror the JSON contract of
`tplan solve --json` / `tplan check --json`. Bad input raises tplan.InputError with the same
message the command line prints. The command line is built on the same functions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .emit import knobs_from_deepspeed
from .errors import InputError
from .explain import answer
from .goal import Problem, load_problem
from .load import Document, from_data, read


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
    suggestions: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """A plan was found, or the config passes every rule (exit code 0 on the command line)."""
        return self.status in ("optimal", "feasible", "pass")

    def to_dict(self) -> dict:
        """The JSON object `tplan ... --json` prints."""
        result = {"status": self.status, "config": self.config, "estimate": self.estimate,
                  "violations": self.violations, "binding": self.binding, "conflict": self.conflict}
        return {**result, "suggestions": self.suggestions} if self.suggestions else result


def solve(goal: dict | str | Path, *, rules: tuple = (), time_limit: float = 60.0, explain: bool = True) -> Answer:
    """The fastest plan of ``goal`` that fits (or why none does), as `tplan solve --json` answers."""
    problem, plan, hints = plan_goal(goal, rules, time_limit, explain)
    return Answer(**answer(problem, plan.status, plan.assessment, plan.binding, plan.conflict, hints))


def check(config: dict | str | Path, *, rules: tuple = (), goal: dict | str | Path | None = None) -> Answer:
    """``config`` (a tplan config, or a DeepSpeed JSON with ``goal`` for what it does not carry)
    checked against every rule, as `tplan check --json` answers."""
    problem = config_problem(config, goal, rules)
    assessment = problem.evaluator().assess({knob: values[0] for knob, values in problem.domains.items()})
    return Answer(**answer(problem, "pass" if assessment.passes else "fail", assessment))


def plan_goal(goal, rules: tuple, time_limit, explain: bool, before_search=None):
    """(problem, plan, suggestions) for a goal; ``time_limit`` is seconds or a shared solve.Budget;
    ``before_search(problem)`` runs once the goal is read (the command line checks its outputs there)."""
    from .explain import suggestions
    from .search import Budget, budget_of, solve as search  # OR-Tools loads only when a goal is solved

    budget: Budget = budget_of(time_limit)
    problem = load_problem(_source(goal), extra_rules=tuple(rules))
    if before_search:
        before_search(problem)
    plan = search(problem, budget, explain=explain)
    hints = suggestions(problem, plan, budget) if explain and plan.status == "infeasible" else []
    return problem, plan, hints


def config_problem(config, goal, rules: tuple) -> Problem:
    """A tplan config, or a DeepSpeed JSON whose model, data and hardware come from ``goal`` or
    from CONFIG.tplan.yaml beside it."""
    if isinstance(config, dict) or not str(config).endswith(".json"):
        return load_problem(_source(config), pinned=True, extra_rules=tuple(rules))
    path = str(config)
    side = Path(path).with_suffix(".tplan.yaml")
    base = goal if goal is not None else (str(side) if side.is_file() else None)
    if base is None:
        raise InputError(path, "", f"--goal GOAL.yaml or {side.name} beside it, naming the model, data and "
                                   f"hardware that a DeepSpeed JSON does not carry")
    return load_problem(_source(base), pinned=True, extra_rules=tuple(rules),
                        knobs=knobs_from_deepspeed(read(path)), knobs_file=path)


def _source(goal) -> str | Path | Document:
    return from_data(goal, "<goal dict>") if isinstance(goal, dict) else goal
