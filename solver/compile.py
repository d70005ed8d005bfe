"""Encode: a Problem's rules as an OR-Tools CP-SAT model over the knobs - the last of the
compiler's reductions, each in its own module:

    parse (expr.py: rule text -> tree) -> fold (fold.py: branches the goal decides) -> substitute
    (substitute.py: the rules as they stand in passing plans) -> rewrite (rewrite.py: distribute,
    split conditionals, regroup) -> bound (bounds.py: an interval per subtree) -> tabulate
    (tabulate.py: exact values over the knobs a subtree reads, up to a table limit) -> encode (here:
    CP-SAT variables and constraints)

Every knob becomes an index variable over its domain (plus one Boolean per value). A subtree
that tabulates becomes a table constraint; a larger one is rebuilt from its children (after its
rewrite) with CP-SAT's exact integer constraints: linear sums, products
(AddMultiplicationEquality), divisions (AddDivisionEquality), min/max, reified comparisons and
Boolean logic.

Numbers are scaled integers: a compiled term ``t`` at unit ``u`` (a power of two) stands for the
real value ``t * u``. Units are picked from the bounds so that every intermediate stays inside
64-bit integers. Rounding is bounded by a few units; each comparison is relaxed by
``RELATIVE_SLACK`` of its scale so no truly feasible plan is cut off, and the solver re-checks
every plan with the exact evaluator (see search.py). Each hard constraint is guarded by its own
literal, so an infeasible goal can be explained by the smallest set of rules CP-SAT needs to
prove it.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

from .cpsat import cp_model

from . import expr
from .bounds import Bounds
from .goal import Problem
from .rewrite import Rewriter
from .tabulate import TABLE_LIMIT, UNDEFINED, Tabulator

VALUE_BITS = 34             # magnitude of a compiled term relative to its unit
FACTOR_BITS = 26            # magnitude of each factor of a product or of a divisor (34 + 26 <= 62)
SUM_BITS = 48               # objective and comparisons: sums of exact tables, with 2**14 headroom in int64
RELATIVE_SLACK = 2.0 ** -20  # comparisons are relaxed by this share of their scale


def unit_for(magnitude: float, bits: int) -> float:
    """Power of two such that ``magnitude / unit`` is about ``2**bits``."""
    return 2.0 ** (math.ceil(math.log2(magnitude)) - bits) if magnitude > 0 else 1.0


@dataclass
class CompiledModel:
    model: cp_model.CpModel
    index: dict[str, cp_model.IntVar]                    # knob -> index into its domain
    chosen: dict[str, list[cp_model.IntVar]]             # knob -> one Boolean per value
    guards: dict[str, cp_model.IntVar]                   # constraint id -> guard literal
    objective_resolution: float = 0.0                    # rounding unit of the objective
    table_limit: int = TABLE_LIMIT                       # most knob combinations a table spans
    objective_unit: float = 0.0                          # what one unit of the minimised sum is worth
    objective_error: float = 0.0                         # how far the encoded objective may be from a plan's value
    preference: int = 0                                  # the most the tie-break adds to the minimised sum

    def lower_bound(self, solver) -> float:
        """A bound no passing plan's objective lies below, from CP-SAT's bound on the minimised sum
        (the tie-break and the encoding's error taken off)."""
        return (solver.BestObjectiveBound() - self.preference) * self.objective_unit - self.objective_error


class Compiler:
    def __init__(self, problem: Problem, domains: dict, objective_cap: float | None = None,
                 table_limit: int = TABLE_LIMIT):
        self.problem = problem
        self.rules = problem.rules
        self.domains = domains
        self.objective_cap = objective_cap  # plans above it cannot beat a known one: prune them
        self.objective_resolution = 0.0     # the objective's rounding unit (how close two plans may tie)
        self.objective_unit = self.objective_error = 0.0  # the minimised sum's unit, its error (CompiledModel)
        self.tabulator = Tabulator(problem.rules, domains, problem.evaluator(), table_limit)
        self.rewriter = Rewriter(self.tabulator)
        self.bounds = Bounds(self.tabulator, self.rewriter, problem.file)
        self.table, self.knobs_of = self.tabulator.table, self.tabulator.knobs_of
        self.model = cp_model.CpModel()
        self._numeric: dict[tuple[int, float], cp_model.LinearExpr] = {}
        self._boolean: dict[int, cp_model.IntVar] = {}
        self.index, self.chosen = {}, {}
        for name, values in self.domains.items():
            self.index[name] = self.model.NewIntVar(0, len(values) - 1, f"{name}#")
            self.chosen[name] = [self.model.NewBoolVar(f"{name}={value}") for value in values]
            self.model.AddExactlyOne(self.chosen[name])
            self.model.Add(self.index[name] == sum(i * b for i, b in enumerate(self.chosen[name])))

    # -- numeric terms --------------------------------------------------------------------
    def numeric(self, node: expr.Node, unit: float) -> cp_model.LinearExpr:
        """Integer expression ``t`` with ``t * unit`` approximately equal to the node's value."""
        key = (id(node), unit)
        if key not in self._numeric:
            low, high = self.bounds(node)
            natural = unit_for(max(abs(low), abs(high)), VALUE_BITS)
            if unit < natural and self.table(node) is None:
                # finer than VALUE_BITS can carry: build at the natural unit, scale exactly
                self._numeric[key] = self.numeric(node, natural) * round(natural / unit)
            else:
                self._numeric[key] = self._build_numeric(node, unit)
        return self._numeric[key]

    def _build_numeric(self, node: expr.Node, unit: float):
        table = self.table(node)
        if table is not None:
            return self._element([None if number is None else round(number / unit) for number in table.numbers()],
                                 table.knobs)
        if isinstance(node, expr.Name):
            return self.numeric(self.rules.derived[node.name], unit)
        if isinstance(node, expr.Unary) and node.op == "-":
            return -self.numeric(node.operand, unit)
        if isinstance(node, expr.Binary) and node.op in ("+", "-"):
            left, right = self.numeric(node.left, unit), self.numeric(node.right, unit)
            return left + right if node.op == "+" else left - right
        if isinstance(node, expr.Binary) and node.op == "*":
            return self._product(node, unit)
        if isinstance(node, expr.Binary) and node.op == "/":
            return self._quotient(node, unit)
        if isinstance(node, expr.Call) and node.function in ("min", "max"):
            terms = [self.numeric(arg, unit) for arg in node.args]
            result = self._new_int(node, unit)
            (self.model.AddMinEquality if node.function == "min" else self.model.AddMaxEquality)(result, terms)
            return result
        if isinstance(node, expr.IfElse):
            condition = self.boolean(node.condition)
            result = self._new_int(node, unit)
            self.model.Add(result == self.numeric(node.then, unit)).OnlyEnforceIf(condition)
            self.model.Add(result == self.numeric(node.otherwise, unit)).OnlyEnforceIf(condition.Not())
            return result
        if isinstance(node, (expr.Binary, expr.Unary)):  # a condition used as 0/1
            return self.boolean(node) * round(1 / unit)
        raise self.bounds.too_large(node, "fewer knob combinations")

    def _element(self, ints: list[int | None], knobs: tuple[str, ...], target=None):
        """``target`` equals ``ints[combination of knobs]``, as a table constraint (CP-SAT
        propagates these far better than an element over a combined index). A combination
        whose value is None (infinite or undefined, e.g. x / 0) is no plan: its row is left out."""
        defined = [value for value in ints if value is not None]
        if target is None and len(defined) == len(ints) and len(set(ints)) == 1:
            return ints[0]
        if target is None:
            target = self.model.NewIntVar(min(defined, default=0), max(defined, default=0), "")
        rows = itertools.product(*(range(len(self.domains[knob])) for knob in knobs))
        self.model.AddAllowedAssignments([self.index[knob] for knob in knobs] + [target],
                                         [(*row, value) for row, value in zip(rows, ints) if value is not None])
        return target

    def _new_int(self, node: expr.Node, unit: float) -> cp_model.IntVar:
        """A variable for the node's value; its domain is padded by the rounding a product or
        quotient of FACTOR_BITS-wide factors can add (a few parts in 2**FACTOR_BITS)."""
        return self._padded_int(*self.bounds(node), unit)

    def _padded_int(self, low: float, high: float, unit: float, name: str = "") -> cp_model.IntVar:
        return self.model.NewIntVar(math.floor(low / unit) - _pad(low, high, unit),
                                    math.ceil(high / unit) + _pad(low, high, unit), name)

    def _factor(self, node: expr.Node):
        low, high = self.bounds(node)
        unit = unit_for(max(abs(low), abs(high)), FACTOR_BITS)
        return self.numeric(node, unit), unit

    def _product(self, node: expr.Binary, unit: float):
        rewritten = self.rewriter.product(node)
        if rewritten is not None:
            return self.numeric(rewritten, unit)
        (left, left_unit), (right, right_unit) = self._factor(node.left), self._factor(node.right)
        if isinstance(left, int) or isinstance(right, int):
            raw = left * right  # a constant factor keeps the term linear
        else:
            limit = (2 ** FACTOR_BITS + 2) ** 2
            raw = self.model.NewIntVar(-limit, limit, "")
            self.model.AddMultiplicationEquality(raw, [left, right])
        return self._rescale(raw, left_unit * right_unit, unit, node)

    def _rescale(self, raw, raw_unit: float, unit: float, node: expr.Node):
        shift = round(math.log2(raw_unit / unit))
        if shift >= 0:
            return raw * (2 ** shift)
        if max(map(abs, self.bounds(node))) < unit:  # below one unit of the sum it joins: it rounds to 0
            return 0                                 # (and 2**-shift may exceed what CP-SAT's int64 holds)
        result = self._new_int(node, unit)
        self.model.AddDivisionEquality(result, raw, 2 ** -shift)
        return result

    def _quotient(self, node: expr.Binary, unit: float):
        rewritten = self.rewriter.product(node)
        if rewritten is not None:
            return self.numeric(rewritten, unit)
        low, high = self.bounds(node.right)
        if low <= 0 <= high:
            raise self.bounds.too_large(node, "a divisor that cannot be zero")
        divisor, divisor_unit = self._factor(node.right)
        if not isinstance(divisor, int):  # CP-SAT needs a divisor variable whose domain excludes 0
            ends = sorted((math.floor(low / divisor_unit) - 2, math.ceil(high / divisor_unit) + 2))
            positive = self.model.NewIntVar(max(1, ends[0]), ends[1], "") if low > 0 else \
                self.model.NewIntVar(ends[0], min(-1, ends[1]), "")
            self.model.Add(positive == divisor)
            divisor = positive
        numerator = self.numeric(node.left, unit * divisor_unit)
        result = self._new_int(node, unit)
        self.model.AddDivisionEquality(result, numerator, divisor)
        return result

    # -- Boolean terms --------------------------------------------------------------------
    def boolean(self, node: expr.Node) -> cp_model.IntVar:
        key = id(node)
        if key not in self._boolean:
            self._boolean[key] = self._build_boolean(node)
        return self._boolean[key]

    def _build_boolean(self, node: expr.Node):
        table = self.table(node)
        result = self.model.NewBoolVar(expr.render(node)[:60])
        if table is not None:
            truth = [None if value is UNDEFINED else int(bool(value)) for value in table.values]
            if len(set(truth)) == 1 and truth[0] is not None:
                self.model.Add(result == truth[0])
            else:
                self._element(truth, table.knobs, result)
            return result
        if isinstance(node, expr.Name):
            return self.boolean(self.rules.derived[node.name])
        if isinstance(node, expr.Unary) and node.op == "not":
            return self.boolean(node.operand).Not()
        if isinstance(node, expr.Binary) and node.op in ("and", "or"):
            left, right = self.boolean(node.left), self.boolean(node.right)
            if node.op == "and":
                self.model.AddBoolAnd([left, right]).OnlyEnforceIf(result)
                self.model.AddBoolOr([left.Not(), right.Not()]).OnlyEnforceIf(result.Not())
            else:
                self.model.AddBoolOr([left, right]).OnlyEnforceIf(result)
                self.model.AddBoolAnd([left.Not(), right.Not()]).OnlyEnforceIf(result.Not())
            return result
        if isinstance(node, expr.Binary) and node.op in ("<", "<=", ">", ">=", "==", "!="):
            return self._comparison(node, result)
        if isinstance(node, expr.IfElse):
            condition = self.boolean(node.condition)
            self.model.Add(result == self.boolean(node.then)).OnlyEnforceIf(condition)
            self.model.Add(result == self.boolean(node.otherwise)).OnlyEnforceIf(condition.Not())
            return result
        raise self.bounds.too_large(node, "fewer knob combinations")

    def _comparison(self, node: expr.Binary, result):
        bounds = [*self.bounds(node.left), *self.bounds(node.right)]
        unit = unit_for(max(abs(value) for value in bounds), SUM_BITS)
        left, right = self.numeric(node.left, unit), self.numeric(node.right, unit)
        slack = max(2, round(RELATIVE_SLACK * 2 ** SUM_BITS))
        if node.op in (">", ">="):
            left, right = right, left
        if node.op in ("==", "!="):
            holds = [left - right <= slack, right - left <= slack]
            equal = self.model.NewBoolVar("")
            self.model.AddBoolAnd([]).OnlyEnforceIf(equal)
            for condition in holds:
                self.model.Add(condition).OnlyEnforceIf(equal)
            self.model.AddBoolOr([self._reified(left - right > slack), self._reified(right - left > slack)]
                                 ).OnlyEnforceIf(equal.Not())
            self.model.Add(result == (equal if node.op == "==" else equal.Not()))
            return result
        self.model.Add(left <= right + slack).OnlyEnforceIf(result)
        self.model.Add(left > right + slack).OnlyEnforceIf(result.Not())
        return result

    def _reified(self, condition) -> cp_model.IntVar:
        literal = self.model.NewBoolVar("")
        self.model.Add(condition).OnlyEnforceIf(literal)
        return literal

    # -- the objective, split into cases --------------------------------------------------
    def _objective(self, node: expr.Node):
        """The objective as an integer term. With ``objective_cap`` (the refining pass) an objective too
        large to tabulate is split into one case per value of the widest knob it reads, each with that
        knob pinned, and capped: interval bounds that treat correlated factors as independent (steps x
        step time, both set by the accumulation) are loose by orders of magnitude, and the fixed-point
        unit follows the bound; pinned, each case's bounds are tight and most of its subexpressions
        tabulate exactly."""
        knobs = [knob for knob in self.knobs_of(node) if len(self.domains[knob]) > 1]
        if self.table(node) is not None or not knobs or self.objective_cap is None:
            return self._at_own_unit(node)
        knob = max(knobs, key=lambda name: (len(self.domains[name]), name))
        cases = [self.tabulator.keep(self.rewriter.pinned(node, knob, value)) for value in self.domains[knob]]
        bounds = [self.bounds(case) for case in cases]
        magnitude = max(max(abs(low), abs(high)) for low, high in bounds)
        unit = unit_for(magnitude, SUM_BITS)
        self.objective_unit, self.objective_error = unit, RELATIVE_SLACK * magnitude
        terms = [self.numeric(case, unit) for case in cases]
        low, high = min(low for low, _ in bounds), max(high for _, high in bounds)
        result = self._padded_int(low, high, unit, "objective")
        for chosen, term in zip(self.chosen[knob], terms):
            self.model.Add(result == term).OnlyEnforceIf(chosen)
        self.model.Add(result <= math.ceil(self.objective_cap / unit) + _pad(low, high, unit))  # rounding included
        return result

    def _at_own_unit(self, node: expr.Node):
        low, high = self.bounds(node)
        magnitude = max(abs(low), abs(high))
        self.objective_resolution = unit_for(magnitude, SUM_BITS if self.table(node) is not None else VALUE_BITS)
        self.objective_unit, self.objective_error = unit_for(magnitude, SUM_BITS), RELATIVE_SLACK * magnitude
        return self.numeric(node, self.objective_unit)

    # -- whole model ----------------------------------------------------------------------
    def compile(self) -> CompiledModel:
        guards = {}
        for constraint in self.rules.constraints:
            if constraint.severity != "error":
                continue
            guard = self.model.NewBoolVar(f"guard {constraint.id}")
            self.model.AddImplication(guard, self.boolean(constraint.condition))
            guards[constraint.id] = guard
        objective = self._objective(expr.Name(self.problem.objective))
        # Ties go to plans whose knob values sit earliest in their domains (bf16 before fp16, ZeRO 0
        # before 3): each position costs one unit, 2**-SUM_BITS of the objective's bound.
        preference = sum(self.index.values())
        self.model.Minimize(objective + preference)
        self.model.AddDecisionStrategy(list(self.index.values()), cp_model.CHOOSE_FIRST, cp_model.SELECT_MIN_VALUE)
        return CompiledModel(self.model, self.index, self.chosen, guards, self.objective_resolution,
                             self.tabulator.limit, self.objective_unit, self.objective_error,
                             sum(len(values) - 1 for values in self.domains.values()))


def _pad(low: float, high: float, unit: float) -> int:
    """Units a value of this range may be off by: the rounding a product or quotient of
    FACTOR_BITS-wide factors can add (a few parts in 2**FACTOR_BITS)."""
    return math.ceil(max(abs(low), abs(high)) / unit * 2.0 ** (4 - FACTOR_BITS)) + 2
