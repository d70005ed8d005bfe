"""Search: run CP-SAT on the compiled model and certify its answer with the evaluator.

Every plan CP-SAT returns is re-evaluated exactly; a plan that the scaled integers let
through but the evaluator rejects is cut off with a no-good (with the neighbours of it the
evaluator rejects too, kept for the goal's other searches) and the search repeats, so a
returned plan always fits. The evaluator then polishes it (every one- and two-knob change),
and when the objective's rounding unit is coarse the search runs again with the objective
split into tight cases (compile.py). "optimal" means CP-SAT proved the encoded optimum and
the evaluator found nothing better; among equally good plans nearby, the one with the
most memory headroom is returned. When nothing fits, CP-SAT names a set of rules that
together rule out every plan (its infeasibility core over the guard literals). One Budget
bounds the wall-clock time of all of it; each CP-SAT call also stops at a deterministic
work limit, so answers do not depend on the machine unless the budget cuts them short.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from dataclasses import dataclass, field

from .cpsat import cp_model

from . import expr
from .bounds import TooLarge
from .compile import CompiledModel, Compiler
from .errors import InputError
from .evaluate import Assessment
from .explain import changed_knobs
from .fold import fold
from .goal import Problem
from .substitute import compile_view, sources
from .tabulate import PREFERRED_TABLE_LIMIT, TABLE_LIMIT

MAX_CUTS = 100
RESOLUTION = 1e-6  # a plan within this share of the best is as good: below it the encoding may misorder
REFINE_ABOVE = 1e-2  # search again when the objective's rounding unit exceeds 1% of the plan's value
POLISH_ROUNDS = 10
NEIGHBOURS_PER_CLOCK_CHECK = 64  # neighbour scans stop when the command's time limit is spent
WORK_LIMIT = 60.0  # CP-SAT deterministic time per call (about 1-2 minutes of one core): a limit that ends
                   # the search at the same point on every machine, unlike wall-clock time


@dataclass
class Budget:
    """Wall-clock seconds the whole command may spend; each CP-SAT call gets what is left."""

    seconds: float
    started: float = field(default_factory=time.monotonic)

    def left(self) -> float:
        return max(0.0, self.started + self.seconds - time.monotonic())


def budget_of(limit: "Budget | float") -> Budget:
    return limit if isinstance(limit, Budget) else Budget(float(limit))


@dataclass
class Plan:
    status: str                        # optimal | feasible | infeasible | unknown
    assessment: Assessment | None
    conflict: list[str] = field(default_factory=list)
    binding: list[str] = field(default_factory=list)
    solve_seconds: float = 0.0
    cuts: int = 0
    binding_details: list = field(default_factory=list)   # Binding per binding rule
    runner_up: Assessment | None = None                   # the next best plan one knob away (worse than the plan)
    bound: float | None = None                            # no passing plan's objective is below it (CP-SAT's proof)
    gap: float | None = None                              # a feasible plan: at most this share above the best

    def with_gap(self, objective: str) -> "Plan":
        """The plan with its gap: how far above ``bound`` its objective may be, as a share of it (feasible
        plans only: an optimal one has none to tell, and without a bound there is nothing proven)."""
        value = self.assessment.values[objective] if self.assessment is not None else None
        if self.status != "feasible" or self.bound is None or not value:
            return dataclasses.replace(self, gap=None)
        return dataclasses.replace(self, gap=max(0.0, (value - self.bound) / abs(value)))


@dataclass
class Binding:
    """A rule that stops a better plan one knob away: how near the plan is to the rule's limit, and
    the best plan it stops."""

    rule: str
    now: str                  # the rule's message on the plan (its numbers against the limit)
    headroom: float | None    # the share of the limit the plan leaves free (a comparison's rule)
    blocked: dict             # the better plan it stops: its change, how much better, what it breaks

    def to_dict(self) -> dict:
        return {"rule": self.rule, "now": self.now, "headroom": self.headroom, "blocked": self.blocked}


class Search:
    """One compiled goal, solvable repeatedly with rules switched off or bounds added."""

    def __init__(self, problem: Problem, budget: Budget, workers: int = 1, max_cuts: int = MAX_CUTS,
                 optimize: bool = True):
        self.problem, self.budget, self.workers, self.max_cuts = problem, budget, workers, max_cuts
        self.optimize = optimize  # False: any plan that passes will do (whether one exists)
        self.evaluator = problem.evaluator()
        self.domains, self.pruners, self.emptied = self._prune()
        self.view = compile_view(problem)  # what the compiler encodes (substitute.py)
        self.compiled: CompiledModel | None = None if self.emptied else self._compile()
        self.cuts = 0
        self.interrupted = False  # a scan of neighbours the time limit cut short: the plan is not certified
        self.bound: float | None = None  # no passing plan's objective is below it, as the last search proved

    def _compile(self, objective_cap: float | None = None, table_limit: int = PREFERRED_TABLE_LIMIT) -> CompiledModel:
        """The model with tables of at most ``table_limit`` combinations, or of up to TABLE_LIMIT where a
        subexpression cannot be rebuilt from smaller parts. Small tables first: CP-SAT loads and
        propagates large tables slowly (over the 46 examples and four benchmark goals, 512 took the
        first search's CPU time, compiling included, from 16.1 to 7.5 s to the same optima; 1,024 gave
        9.1), but more products of rounded factors make the encoding coarser, so a search whose plan
        the evaluator rejects, or whose objective needs refining, goes on with the largest tables."""
        try:
            compiled = Compiler(self.view, self.domains, objective_cap, table_limit).compile()
        except TooLarge:
            if table_limit >= TABLE_LIMIT:
                raise
            return self._compile(objective_cap, TABLE_LIMIT)
        for plan, rules in self.problem.rules._rejected_memo.items():
            self._forbid(compiled, dict(plan), rules)
        if not self.optimize:
            compiled.model.ClearObjective()
        return compiled

    def _prune(self) -> tuple[dict, list[str], list[str]]:
        """Drop knob values that break a rule reading that knob alone (fp8 on an A100);
        returns the domains, the rules that dropped values, and those that emptied a domain."""
        domains, pruners, emptied = dict(self.problem.domains), [], []
        for constraint in self.problem.rules.constraints:
            knobs = self.problem.rules.knobs_read(constraint.condition)
            if constraint.severity != "error" or len(knobs) != 1:
                continue
            (knob,) = knobs
            kept = tuple(value for value in domains[knob]
                         if self.evaluator.holds(constraint, {knob: value}, {}))
            if len(kept) < len(domains[knob]):
                pruners.append(constraint.id)
            if not kept:
                emptied.append(constraint.id)
            domains[knob] = kept or domains[knob]
        return domains, pruners, emptied

    def _solver(self) -> cp_model.CpSolver:
        solver = cp_model.CpSolver()
        solver.parameters.max_deterministic_time = WORK_LIMIT
        solver.parameters.max_time_in_seconds = max(self.budget.left(), 1e-3)
        solver.parameters.num_workers = self.workers  # one worker: the same input gives the same plan
        # Ctrl-C must interrupt the command (exit 130, nothing written), not end the search early
        # with a half-searched plan: leave SIGINT to Python, which raises once CP-SAT returns
        solver.parameters.catch_sigint_signal = False
        # CP-SAT's presolve wrongly proved some large scaled models infeasible (ortools 9.15, an
        # 8-node goal in scripts/benchmark.py) and search is faster without it on these models.
        solver.parameters.cp_model_presolve = False
        # Probing and the LP relaxation cost more than they prune on these models (table lookups
        # and products of knob tables): without them the benchmark's all-knob goals solve about a
        # third faster to the same proven optimum (docs/benchmark.md).
        solver.parameters.cp_model_probing_level = 0
        solver.parameters.linearization_level = 0
        # SAT inprocessing (clause vivification, equivalence and subsumption passes at restarts) spends
        # most of the search on these models' tens of thousands of table literals for nothing: off, the
        # 1,024-GPU all-knob goal proves the same optimum in 0.5 deterministic seconds instead of 3.8,
        # and CP-SAT's share of the one-node goal falls from 0.22 to 0.06 s (docs/benchmark.md).
        solver.parameters.use_sat_inprocessing = False
        # Follow the compiler's decision strategy (each knob's values in domain order) before CP-SAT's
        # own heuristics: over the 46 shipped examples CP-SAT's deterministic work fell from 5.0 to
        # 1.0 to the same optima (one-node all-knob goal 4.1 -> 1.5), the other benchmark goals alike.
        solver.parameters.search_branching = cp_model.PARTIAL_FIXED_SEARCH
        return solver

    def config_of(self, solver: cp_model.CpSolver) -> dict:
        return {knob: self.domains[knob][solver.Value(index)]
                for knob, index in self.compiled.index.items()}

    def run(self):
        """Solve until CP-SAT's plan passes the evaluator; returns (status, assessment)."""
        while True:
            model = self.compiled.model
            model.ClearAssumptions()
            model.AddAssumptions(list(self.compiled.guards.values()))
            solver = self._solver()
            status = solver.Solve(model)
            if status == cp_model.MODEL_INVALID:
                raise InputError("rule packs", "", f"rules CP-SAT can encode; it rejects the model: "
                                                   f"{model.Validate() or 'no reason given'}")
            if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
                return status, None
            self.bound = self.compiled.lower_bound(solver)
            assessment = self.evaluator.assess(self.config_of(solver))
            if assessment.passes:
                return status, assessment
            if self.compiled.table_limit < TABLE_LIMIT:  # the coarser encoding misjudged a plan: encode finer
                self.compiled = self._compile(table_limit=TABLE_LIMIT)
                continue
            if self.cuts >= self.max_cuts:  # the encoding and the evaluator disagree too often: no answer, no crash
                return cp_model.UNKNOWN, None
            self._cut(assessment)

    def _cut(self, rejected: Assessment) -> None:
        """Forbid the knob assignment of a plan the evaluator rejected, and of every plan one or two knob
        changes from it that the evaluator rejects too: the plans a comparison's slack lets through lie
        side by side (a 70B pretrain on 1,024 GPUs against a 30-day deadline: plans of 30 to 41 days),
        and CP-SAT offered them one call at a time for half a minute. Each is kept with the rules it
        breaks for the goal's other searches (its conflict's, its repairs'), which forbid it while
        one of those rules is on (_compile)."""
        self.cuts += 1
        known = self.problem.rules._rejected_memo
        for config in [rejected.config, *_neighbours(rejected.config, self.domains)]:
            plan = tuple(sorted(config.items()))
            if plan in known and config is not rejected.config:
                continue  # forbidden already, for the rules another search found it to break
            assessment = rejected if config is rejected.config else \
                self.evaluator.assess(config, self.unchanged(rejected, config))
            broken = frozenset(violation.rule for violation in assessment.violations if violation.severity == "error")
            if broken:
                known[plan] = known.get(plan, frozenset()) | broken
                self._forbid(self.compiled, config, broken)

    def _forbid(self, compiled: CompiledModel, config: dict, rules: frozenset) -> None:
        """No plan ``config`` while one of ``rules`` (which it breaks) is on."""
        if any(config[knob] not in self.domains[knob] for knob in compiled.chosen):
            return  # a value this search's domains leave out anyway
        plan = [compiled.chosen[knob][self.domains[knob].index(config[knob])].Not() for knob in compiled.chosen]
        for rule in rules & compiled.guards.keys():
            compiled.model.AddBoolOr(plan + [compiled.guards[rule].Not()])

    def conflict(self) -> list[str]:
        """Rules that together rule out every plan of the pruned domains: CP-SAT's core over the guard
        literals, then each rule dropped in turn while the rest still prove infeasibility. Both on the
        model without its objective: with one, CP-SAT (9.15) names every assumption as the core, and it
        searches a subset that has plans for the best one rather than stopping at the first (a 70B goal
        spent 44 s here). The rules whose equalities the compiled model substitutes are kept: it reads
        them even with their guards off, so only a model compiled without them (minimal_conflict) can tell."""
        feasibility = self.compiled.model.clone()
        feasibility.ClearObjective()
        by_index = {guard.Index(): rule for rule, guard in self.compiled.guards.items()}
        kept = sources(self.problem)
        _, solver = self._assume(feasibility, list(self.compiled.guards))
        core = sorted({by_index[index] for index in solver.SufficientAssumptionsForInfeasibility() if index in by_index}
                      | kept)
        for rule in [rule for rule in core if rule not in kept]:
            rest = [other for other in core if other != rule]
            if self._assume(feasibility, rest)[0] == cp_model.INFEASIBLE:
                core = rest
        return core

    def _assume(self, model: cp_model.CpModel, rules: list[str]):
        """``model`` solved with the guards of ``rules`` on: the status, and the solver."""
        model.ClearAssumptions()
        model.AddAssumptions([self.compiled.guards[rule] for rule in rules])
        solver = self._solver()
        return solver.Solve(model), solver

    def needs_refining(self, plan: Assessment) -> bool:
        """Whether the objective's rounding unit is too coarse to order plans near ``plan``."""
        return self.compiled.objective_resolution > REFINE_ABOVE * abs(plan.values[self.problem.objective])

    def refine(self, incumbent: Assessment):
        """Search again with the objective split into tight cases (compile.py) and capped at
        ``incumbent``'s value, hinted with it; returns (status, the better plan or the incumbent)."""
        objective = self.problem.objective
        self.compiled = self._compile(objective_cap=incumbent.values[objective], table_limit=TABLE_LIMIT)
        for knob, index in self.compiled.index.items():
            self.compiled.model.AddHint(index, self.domains[knob].index(incumbent.config[knob]))
        cap, before = incumbent.values[objective], self.bound
        status, found = self.run()
        # plans above the cap are worse than the incumbent: the bound over those below it bounds them all
        self.bound = cap - self.compiled.objective_error if status == cp_model.INFEASIBLE else \
            before if found is None else min(self.bound, cap)
        if found is None or found.values[objective] > cap:
            return (cp_model.OPTIMAL if status == cp_model.OPTIMAL else cp_model.FEASIBLE), incumbent
        return status, found

    def polish(self, plan: Assessment) -> Assessment | None:
        """The best passing plan one or two knob changes from ``plan``, when it beats ``plan`` by more
        than RESOLUTION (the scaled encoding can misorder plans that close); None when none does.
        Repeats from the better plan, a few rounds at most."""
        objective, best = self.problem.objective, None
        for _ in range(POLISH_ROUNDS):
            current = best or plan
            found = self._best_neighbour(current, objective)
            if found.values[objective] >= current.values[objective] * (1 - RESOLUTION):
                return best
            best = found
            if self.interrupted:
                break
        return best

    def settle(self, plan: Assessment) -> Assessment:
        """Among the passing plans one or two knob changes from ``plan`` that are as good on the
        objective (within RESOLUTION), the one that needs the least memory per GPU (the fastest when
        memory is the objective): equally good plans differ in headroom, and the search's order must
        not choose a plan at the edge of the GPU's memory over one that leaves room. Where that ties
        too (bf16 and fp16 on an A100), the one whose values sit earliest in their domains, as the
        search's tie-break intends but its rounding may not keep. Repeats from the chosen plan, a few
        rounds at most, never past RESOLUTION of ``plan``'s objective."""
        objective = self.problem.objective
        second = "train_seconds" if objective == "memory_per_gpu" else "memory_per_gpu"
        limit = plan.values[objective] + abs(plan.values[objective]) * RESOLUTION
        for _ in range(POLISH_ROUNDS):
            found = self._best_neighbour(plan, second,
                                         lambda config, known: self.evaluator.name(objective, config, known) <= limit)
            if found is plan or self.interrupted:
                return found
            plan = found
        return plan

    def _best_neighbour(self, plan: Assessment, key: str, admits=None) -> Assessment:
        """The passing plan one or two knob changes from ``plan`` lowest in ``key``, ties going to the
        values earliest in their domains (among those ``admits`` lets through), or ``plan`` when none
        is lower."""
        found = plan
        for count, config in enumerate(_neighbours(plan.config, self.domains)):
            if count % NEIGHBOURS_PER_CLOCK_CHECK == 0 and not self.budget.left():
                self.interrupted = True
                break
            # the cheap tests first: most neighbours are worse, and need no rule checked
            known = self.unchanged(plan, config)
            if not (admits is None or admits(config, known)):
                continue
            value = self.evaluator.name(key, config, known)
            if value < found.values[key] or (value == found.values[key]
                                             and self._position(config) < self._position(found.config)):
                neighbour = self.evaluator.assess(config, known)
                found = neighbour if neighbour.passes else found
        return found

    def _position(self, config: dict) -> int:
        """How far into their domains ``config``'s values sit (the search's tie-break, compile.py)."""
        return sum(self.domains[knob].index(config[knob]) for knob in self.domains)

    @functools.cached_property
    def reads(self) -> dict[str, frozenset]:
        """The knobs each derived quantity reads (for neighbour scans only)."""
        return {name: self.problem.rules.knobs_read(expr.Name(name)) for name in self.problem.rules.derived}

    def unchanged(self, plan: Assessment, config: dict) -> dict:
        """The derived values of ``plan`` that ``config`` keeps (they read no knob it changes): a
        neighbour's evaluation starts from them."""
        changed = {knob for knob, value in config.items() if value != plan.config[knob]}
        return {name: value for name, value in plan.values.items() if not self.reads[name] & changed}

    def binding(self, plan: Assessment) -> tuple[list[Binding], Assessment | None]:
        """Rules that stop a better neighbouring plan (change one knob of the plan to another value of
        its domain: where that would improve the objective but breaks rules, those bind), each with
        its headroom and the best plan it stops; and the runner-up, the best passing neighbour worse than
        the plan (an equally good twin, such as another micro-batch x accumulation split, says nothing)."""
        objective, blocked, runner_up = self.problem.objective, {}, None
        for config in _neighbours(plan.config, self.domains, pairs=False):
            neighbour = self._configuration(plan, config)
            if neighbour is None:
                continue
            if neighbour.passes:  # the runner-up is the next best plan: an equally good twin says nothing
                distinct = neighbour.values[objective] > plan.values[objective] + abs(plan.values[objective]) * RESOLUTION
                if distinct and (runner_up is None or neighbour.values[objective] < runner_up.values[objective]):
                    runner_up = neighbour
            elif neighbour.values[objective] < plan.values[objective]:
                for violation in neighbour.violations:
                    best = blocked.get(violation.rule)
                    if violation.severity == "error" and (best is None or neighbour.values[objective]
                                                          < best[0].values[objective]):
                        blocked[violation.rule] = (neighbour, violation.message)
        constraints = {constraint.id: constraint for constraint in self.problem.rules.constraints}
        found = [Binding(rule, self.evaluator.message(constraints[rule], plan.config, {}),
                         self._headroom(constraints[rule], plan.config),
                         {"change": changed_knobs(plan.config, neighbour.config),
                          "better": 1 - neighbour.values[objective] / plan.values[objective] if plan.values[objective]
                          else None, "breaks": message})
                 for rule, (neighbour, message) in sorted(blocked.items())]
        return found, runner_up

    @functools.cached_property
    def definitions(self) -> list:
        """The rules that define which configurations exist (relaxable: false: whole tp x pp groups,
        the run's global batch ...)."""
        return [c for c in self.problem.rules.constraints if not c.relaxable and c.severity == "error"]

    def _configuration(self, plan: Assessment, config: dict) -> Assessment | None:
        """``config`` assessed, or where it breaks a rule that defines configurations (micro-batch 32
        against the run's global batch), the best neighbour of it that changes one more knob and is a
        configuration (micro-batch 32 with fewer accumulation steps); None when there is none."""
        def assessed(candidate: dict) -> Assessment | None:
            known = self.unchanged(plan, candidate)   # the definitions' values are kept for the assessment
            if all(self.evaluator.holds(rule, candidate, known) for rule in self.definitions):
                return self.evaluator.assess(candidate, known)
            return None
        direct = assessed(config)
        if direct is not None:
            return direct
        changed = {knob for knob, value in config.items() if value != plan.config[knob]}
        completed = [each for each in (assessed({**config, knob: value}) for knob in self.domains if knob not in changed
                                       for value in self.domains[knob] if value != config[knob]) if each is not None]
        objective = self.problem.objective
        return min(completed, key=lambda each: (not each.passes, each.values[objective]), default=None)

    def _headroom(self, constraint, config: dict) -> float | None:
        """The share of its limit a comparison's rule leaves free at ``config`` (None for other rules)."""
        node = constraint.condition
        if not (isinstance(node, expr.Binary) and node.op in ("<", "<=", ">", ">=")):
            return None
        memo = {}
        left, right = self.evaluator.value(node.left, config, memo), self.evaluator.value(node.right, config, memo)
        used, limit = (left, right) if node.op in ("<", "<=") else (right, left)
        if not all(isinstance(x, (int, float)) and math.isfinite(x) for x in (used, limit)) or not limit:
            return None
        return (limit - used) / abs(limit)


def _neighbours(config: dict, domains: dict, pairs: bool = True):
    """Every config that differs from ``config`` in one knob (and, with ``pairs``, in two): the
    one-knob changes first, each knob's values in domain order, so that a scan keeping the first of
    equally good neighbours keeps the fewest changes and the values earliest in their domains (bf16
    before fp16), as the search's own tie-break does."""
    knobs = [knob for knob, values in domains.items() if len(values) > 1]
    changes = {knob: [value for value in domains[knob] if value != config[knob]] for knob in knobs}
    for knob in knobs:
        for value in changes[knob]:
            yield {**config, knob: value}
    for index, first in enumerate(knobs if pairs else ()):
        for value in changes[first]:
            for second in knobs[index + 1:]:
                for other in changes[second]:
                    yield {**config, first: value, second: other}


def with_rules(problem: Problem, keep) -> Problem:
    """The same goal judged by only the constraints named in ``keep``."""
    rules = dataclasses.replace(problem.rules, constraints=[c for c in problem.rules.constraints if c.id in keep])
    return dataclasses.replace(problem, rules=rules)


def _infeasible(problem: Problem, budget: Budget) -> bool:
    """Whether ``problem`` has no plan, as far as the time left proves it (no time left: not proven)."""
    if not budget.left():
        return False
    search = Search(problem, budget, optimize=False)
    return bool(search.emptied) or search.run()[0] == cp_model.INFEASIBLE


def minimal_conflict(problem: Problem, rules: list[str], budget: Budget) -> list[str]:
    """The rules that together rule out every plan, none of them superfluous (pruned values included).
    Rules that define which configurations exist (relaxable: false) stay on while the others are
    dropped, so the answer names the limits there are to trade; they are named themselves only when
    they alone leave no configuration (the goal's own domains admit none)."""
    fixed = [c.id for c in problem.rules.constraints if not c.relaxable]
    if fixed and _infeasible(with_rules(problem, fixed), budget):
        return _shrink(problem, sorted(fixed), [], budget)
    return _shrink(problem, sorted(set(rules) - set(fixed)), fixed, budget)


def _shrink(problem: Problem, conflict: list[str], always: list[str], budget: Budget) -> list[str]:
    """Drop rules of ``conflict`` one at a time while they and ``always`` still rule out every plan."""
    for rule in list(conflict):
        rest = [other for other in conflict if other != rule]
        # ``always`` alone has plans (minimal_conflict checked it; no rules at all have plans)
        if rest and _infeasible(with_rules(problem, rest + always), budget):
            conflict = rest
    return conflict


def solve(problem: Problem, time_limit: Budget | float = 10.0, explain: bool = True, conflict: bool = True,
          certify: bool = True, settle: bool = True, max_cuts: int = MAX_CUTS) -> Plan:
    """The best plan of ``problem`` within ``time_limit`` (a Budget shared by the whole command, or seconds);
    ``explain`` adds the rules binding it, ``conflict`` the rules that together rule out every plan
    when there is none. Without ``certify`` the evaluator does not polish the plan CP-SAT found (within
    the encoding's rounding of the best), and the plan is never called optimal: for repairs, which
    show a plan that fits rather than claim the best one. ``settle`` trades the plan for the one with the
    most memory headroom among equally good plans nearby (Search.settle). After ``max_cuts`` plans the
    evaluator rejects, the search gives up (status unknown): repairs pass a few, so that a repair whose
    limit lies inside the encoding's slack is left out in a few seconds rather than take the command's
    time limit, the same on any machine."""
    budget = budget_of(time_limit)
    started = time.perf_counter()
    if not budget.left():  # the command's time is spent: compiling would only overrun it
        return Plan("unknown", None)
    problem = fold(problem)
    # a rule that fails to evaluate (10**10**10, arithmetic on a word) is a pack error, not "no plan"
    problem.evaluator().assess({knob: values[0] for knob, values in problem.domains.items()})
    search = Search(problem, budget, max_cuts=max_cuts)
    if search.emptied:
        rules = minimal_conflict(problem, search.emptied, budget) if conflict else []
        return Plan("infeasible", None, conflict=rules, solve_seconds=time.perf_counter() - started)
    status, assessment = search.run()
    elapsed = time.perf_counter() - started
    if assessment is None:
        name = "infeasible" if status == cp_model.INFEASIBLE else "unknown"
        rules = (minimal_conflict(problem, search.conflict() + search.pruners, budget)
                 if status == cp_model.INFEASIBLE and conflict else [])
        return Plan(name, None, conflict=rules, solve_seconds=elapsed, cuts=search.cuts)
    # CP-SAT proved the best *encoded* objective; the evaluator has the last word on the exact one
    polish = search.polish if certify else (lambda plan: None)
    better = polish(assessment)
    if search.needs_refining(better or assessment):
        status, assessment = search.refine(better or assessment)
        better = polish(assessment)
    certified = certify and better is None and not search.interrupted
    status_name = "optimal" if status == cp_model.OPTIMAL and certified else "feasible"
    chosen = search.settle(better or assessment) if certify and settle else better or assessment
    elapsed = time.perf_counter() - started
    plan = Plan(status_name, chosen, solve_seconds=elapsed, cuts=search.cuts, bound=search.bound).with_gap(problem.objective)
    if explain:
        plan.binding_details, plan.runner_up = search.binding(plan.assessment)
        plan.binding = [binding.rule for binding in plan.binding_details]
    return plan
