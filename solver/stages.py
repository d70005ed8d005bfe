"""Stages: a goal whose `stages` (pre-training, mid-training, fine-tuning...) share one model,
hardware, deadline and budget. The goal is split into one goal per stage (the stage's task, data and
knobs over the shared ones, without the shared limits); each is planned, and the plans are combined:
the stages' best plans when together they meet the deadline and budget, else the best combination of
each stage's trade-off plans (time x cost) that does.

The objective is summed over the stages (time, cost) or taken at its largest (memory per GPU).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from .errors import InputError
from .evaluate import Assessment, format_value
from .explain import json_number, report
from .goal import Problem, deadline_seconds
from .load import Document
from .validate import validate

SHARED_LIMITS = ("stages", "deadline", "budget")
TOTALS = {"train_seconds": "train_seconds", "gpu_hours": "gpu_hours", "cost": "cost",
          "training_tokens": "training_tokens"}


def is_staged(document: Document) -> bool:
    return isinstance(document.data, dict) and "stages" in document.data


def stage_documents(document: Document) -> list[tuple[str, Document]]:
    """(name, goal) per stage: the stage's task, data and knobs over the shared keys, the lines of
    the stage's own keys those of the file."""
    validate(document, "goal")
    data = document.data
    if "data" in data:
        raise InputError(document.path, document.where(("data",)),
                         "data in each stage, not beside stages (every stage trains on its own data)")
    shared = {key: value for key, value in data.items() if key not in SHARED_LIMITS}
    names = [stage["name"] for stage in data["stages"]]
    if len(set(names)) != len(names):
        raise InputError(document.path, document.where(("stages",)), f"a distinct name for each stage, not {names}")
    staged = []
    for index, stage in enumerate(data["stages"]):
        merged = {**shared, "task": stage.get("task", shared.get("task", "finetune")), "data": stage["data"],
                  "knobs": {**(shared.get("knobs") or {}), **(stage.get("knobs") or {})}}
        lines = {key: line for key, line in document.lines.items() if key[:1] != ("stages",)}
        lines.update({key[2:]: line for key, line in document.lines.items()
                      if key[:2] == ("stages", index) and len(key) > 2})
        staged.append((stage["name"], Document(document.path, merged, lines)))
    return staged


@dataclass
class Staged:
    """The stages' plans (name, Planned) and the combination chosen under the shared limits."""

    stages: list                      # (name, api.Planned) per stage, its plan the one chosen
    status: str                       # optimal | feasible | infeasible | unknown
    conflict: list[str]
    deadline_seconds: float
    budget: float
    repairs: list = field(default_factory=list)   # for a broken shared limit: the limit the nearest plans need

    def totals(self) -> dict | None:
        return totals_of(plans_of(self.stages))

    def answer(self) -> dict:
        """The JSON contract for a staged goal: the totals as its estimate, each stage's own answer."""
        totals = self.totals()
        estimate = {key: json_number(value) for key, value in totals.items()} if totals else None
        result = {"status": self.status, "config": None, "estimate": estimate, "violations": [],
                  "binding": [], "conflict": self.conflict,
                  "stages": [{"name": name, **planned.answer()} for name, planned in self.stages]}
        if self.repairs:
            result["repairs"] = [{"change": change, "passes": False, "estimate": estimate} for change in self.repairs]
        return result

    def text(self) -> str:
        """The human report: each stage's, then the totals against the shared deadline and budget."""
        parts = []
        for name, planned in self.stages:
            plan = planned.plan
            parts.append(f"== stage {name}\n" + report(planned.problem, plan.status, plan.assessment,
                                                       plan.binding, plan.conflict, details=plan.binding_details,
                                                       runner_up=plan.runner_up, gap=plan.gap))
        totals = self.totals()
        line = f"Stages together -- {self.status}"
        if totals:
            line += (f": {format_value(totals['train_seconds'], 'time')}, {format_value(totals['gpu_hours'])} "
                     f"GPU-hours, cost {format_value(totals['cost'])}, at most "
                     f"{format_value(totals['memory_per_gpu_bytes'], 'bytes')} per GPU")
        limits = [f"deadline {format_value(self.deadline_seconds, 'time')}"] if self.deadline_seconds else []
        limits += [f"budget {format_value(self.budget)}"] if self.budget else []
        if limits:
            line += f" ({', '.join(limits)})"
        if self.conflict:
            line += (f"; no combination of the stages' plans meets {', '.join(self.conflict)}: the stages above "
                     f"are the combination nearest to it")
        return "\n\n".join(parts + [line, *(f"  - {change}" for change in self.repairs)])


def plan_stages(document: Document, plan_one, front) -> Staged:
    """Plan each stage (``plan_one(document)`` -> api.Planned); when their best plans together break
    the deadline or budget, choose among each stage's trade-off plans (``front(problems)`` ->
    (plans, complete)) the combination best by the objective that meets both."""
    limit, budget = deadline_seconds(document), float(document.data.get("budget", 0) or 0)
    named = [(name, plan_one(stage)) for name, stage in stage_documents(document)]
    plans = [planned.plan for _, planned in named]
    if any(plan.assessment is None for plan in plans):
        status = "infeasible" if any(plan.status == "infeasible" for plan in plans) else "unknown"
        return Staged(named, status, [], limit, budget)
    proven = all(plan.status == "optimal" for plan in plans)
    if not _broken(plans_of(named), limit, budget):
        return Staged(named, "optimal" if proven else "feasible", [], limit, budget)
    fronts, complete = [], True
    for _, planned in named:
        found, whole = front([planned.problem])
        fronts.append(found)
        complete = complete and whole
    choice = _best_combination(fronts, named[0][1].problem, limit, budget)
    broken = _broken(plans_of(named), limit, budget)
    if choice is None:  # show the combination nearest to the first broken limit, and what each limit needs
        nearest = "train_seconds" if "time/meets-deadline" in broken else "cost"
        _choose(named, [min(found, key=lambda pair: float(pair[1].values[nearest])) for found in fronts])
        totals = totals_of(plans_of(named))
        needs = [f"a deadline of at least {format_value(totals['train_seconds'], 'time')} (the fastest plans "
                 f"together; it is {format_value(limit, 'time')})" if rule == "time/meets-deadline" else
                 f"a budget of at least {format_value(totals['cost'])} (these plans together; it is "
                 f"{format_value(budget)})" for rule in broken]
        return Staged(named, "infeasible" if complete else "unknown", broken, limit, budget, needs)
    _choose(named, choice)
    return Staged(named, "optimal" if complete and proven else "feasible", [], limit, budget)


def _choose(named: list, picks: list) -> None:
    """Give each stage the (problem, assessment) picked for it."""
    for (_, planned), (problem, assessment) in zip(named, picks):
        planned.problem = problem
        planned.plan = _replace_plan(planned.plan, assessment)


def plans_of(named: list) -> list[Assessment]:
    return [planned.plan.assessment for _, planned in named]


def totals_of(chosen: list[Assessment | None]) -> dict | None:
    """The stages' plans summed (time, GPU-hours, cost, tokens) and their largest memory per GPU."""
    if any(assessment is None for assessment in chosen):
        return None
    totals = {key: sum(float(plan.values[name]) for plan in chosen) for key, name in TOTALS.items()}
    totals["memory_per_gpu_bytes"] = max(float(plan.values["memory_per_gpu"]) for plan in chosen)
    totals["tokens_per_second"] = totals["training_tokens"] / totals["train_seconds"]
    return totals


def _broken(chosen: list[Assessment], limit: float, budget: float) -> list[str]:
    broken = []
    if limit and sum(float(plan.values["train_seconds"]) for plan in chosen) > limit:
        broken.append("time/meets-deadline")
    if budget and sum(float(plan.values["cost"]) for plan in chosen) > budget:
        broken.append("time/within-budget")
    return broken


def _best_combination(fronts: list[list], problem: Problem, limit: float, budget: float):
    """One (problem, assessment) per stage, best by the objective, meeting the shared limits;
    partial combinations that another matches or beats on time, cost and objective are dropped."""
    name, largest = problem.objective, problem.objective_name == "memory"
    partial = [((0.0, 0.0, 0.0), [])]
    for found in fronts:
        grown = []
        for (seconds, cost, score), picks in partial:
            for pair in found:
                values = pair[1].values
                point = (seconds + float(values["train_seconds"]), cost + float(values["cost"]),
                         max(score, float(values[name])) if largest else score + float(values[name]))
                if (limit and point[0] > limit) or (budget and point[1] > budget):
                    continue
                grown.append((point, picks + [pair]))
        unique = list({point: (point, picks) for point, picks in reversed(grown)}.values())
        partial = [item for item in unique
                   if not any(all(o <= m for o, m in zip(other[0], item[0])) and other[0] != item[0]
                              for other in unique)]
    return min(partial, key=lambda item: item[0][2])[1] if partial else None


def _replace_plan(plan, assessment: Assessment):
    """The stage's plan swapped for one of its trade-off plans (what bound the first one does not
    bind this one)."""
    return replace(plan, assessment=assessment, binding=[], conflict=[], binding_details=[], runner_up=None)
