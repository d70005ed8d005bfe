"""Compile a Problem's rules into an OR-Tools CP-SAT model over the knobs.

The reduction, node by node:

* every knob becomes an index variable over its domain (plus one Boolean per value);
* a subexpression that reads few enough knobs is *tabulated*: evaluated exactly for each
  combination of those knobs and encoded as an element constraint (so look-ups, powers,
  ceilings, string comparisons and every constant are exact before CP-SAT sees them);
* larger subexpressions are rebuilt from their children with CP-SAT's exact integer
  constraints: linear sums, products (AddMultiplicationEquality), divisions
  (AddDivisionEquality), min/max, reified comparisons and Boolean logic.

Numbers are scaled integers: a compiled term ``t`` at unit ``u`` (a power of two) stands
for the real value ``t * u``. Units are picked from interval bounds so that every
intermediate stays inside 64-bit integers. Rounding is bounded by a few units; each
comparison is relaxed by ``RELATIVE_SLACK`` of its scale so no truly feasible plan is cut
off, and the solver re-checks every plan with the exact evaluator (see search.py).
Each hard constraint is guarded by its own literal, so an infeasible goal can be
explained by the smallest set of rules CP-SAT needs to prove it.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

from ortools.sat.python import cp_model

from . import expr
from .errors import InputError
from .evaluate import ARITHMETIC, FUNCTIONS
from .goal import Problem
from .packs import table_key

TABLE_LIMIT = 4096          # most knob combinations one tabulated subexpression may span
VALUE_BITS = 34             # magnitude of a compiled term relative to its unit
FACTOR_BITS = 26            # magnitude of each factor of a product or of a divisor (34 + 26 <= 62)
SUM_BITS = 48               # objective and comparisons: sums of exact tables, with 2**14 headroom in int64
RELATIVE_SLACK = 2.0 ** -20  # comparisons are relaxed by this share of their scale


def unit_for(magnitude: float, bits: int) -> float:
    """Power of two such that ``magnitude / unit`` is about ``2**bits``."""
    return 2.0 ** (math.ceil(math.log2(magnitude)) - bits) if magnitude > 0 else 1.0


UNDEFINED = object()        # a table entry whose expression fails there (missing look-up key, math error)


def combine(node: expr.Node, row: tuple, tables: dict):
    """One node's value from its children's values, as the evaluator defines the operators;
    UNDEFINED spreads only through the operands actually used (the branch taken, and/or)."""
    if isinstance(node, expr.IfElse):
        condition, then, otherwise = row
        return UNDEFINED if condition is UNDEFINED else (then if condition else otherwise)
    if isinstance(node, expr.Binary) and node.op in ("and", "or"):
        left, right = row
        if left is UNDEFINED or bool(left) == (node.op == "or"):
            return left if left is UNDEFINED else node.op == "or"
        return right if right is UNDEFINED else bool(right)
    if any(value is UNDEFINED for value in row):
        return UNDEFINED
    try:
        if isinstance(node, expr.Lookup):
            return tables[node.table][table_key(row[0])]
        if isinstance(node, expr.Unary):
            return (not row[0]) if node.op == "not" else -row[0]
        if isinstance(node, expr.Binary):
            return ARITHMETIC[node.op](*row)
        return FUNCTIONS[node.function](*row)
    except (ArithmeticError, TypeError, ValueError, KeyError):
        return UNDEFINED


@dataclass
class Table:
    knobs: tuple[str, ...]     # knobs the subexpression reads, in index order
    values: list               # exact value for every combination (row-major)


@dataclass
class CompiledModel:
    model: cp_model.CpModel
    index: dict[str, cp_model.IntVar]                    # knob -> index into its domain
    chosen: dict[str, list[cp_model.IntVar]]             # knob -> one Boolean per value
    guards: dict[str, cp_model.IntVar]                   # constraint id -> guard literal
    objective_resolution: float = 0.0                    # rounding unit of the objective


class Compiler:
    def __init__(self, problem: Problem, domains: dict, objective_cap: float | None = None):
        self.problem = problem
        self.rules = problem.rules
        self.domains = domains
        self.objective_cap = objective_cap  # plans above it cannot beat a known one: prune them
        self.objective_resolution = 0.0     # the objective's rounding unit (how close two plans may tie)
        self.evaluator = problem.evaluator()
        self.model = cp_model.CpModel()
        self._knobs_cache: dict[int, frozenset] = {}
        self._tables: dict[int, Table | None] = {}
        self._bounds: dict[int, tuple[float, float]] = {}
        self._numeric: dict[tuple[int, float], cp_model.LinearExpr] = {}
        self._boolean: dict[int, cp_model.IntVar] = {}
        self._rewritten: list[expr.Node] = []
        self._regrouped: set[int] = set()
        self._rewrites: dict[int, expr.Node | None] = {}
        self.index, self.chosen = {}, {}
        for name, values in self.domains.items():
            self.index[name] = self.model.NewIntVar(0, len(values) - 1, f"{name}#")
            self.chosen[name] = [self.model.NewBoolVar(f"{name}={value}") for value in values]
            self.model.AddExactlyOne(self.chosen[name])
            self.model.Add(self.index[name] == sum(i * b for i, b in enumerate(self.chosen[name])))

    # -- analysis -------------------------------------------------------------------------
    def knobs_of(self, node: expr.Node) -> frozenset:
        key = id(node)
        if key not in self._knobs_cache:
            self._knobs_cache[key] = self.rules.knobs_read(node)
        return self._knobs_cache[key]

    def table(self, node: expr.Node) -> Table | None:
        """Exact values over the knobs the node reads, or None when there are too many combinations."""
        key = id(node)
        if key not in self._tables:
            knobs = tuple(sorted(self.knobs_of(node)))
            size = math.prod(len(self.domains[knob]) for knob in knobs)
            self._tables[key] = None if size > TABLE_LIMIT else Table(knobs, self._tabulate(node, knobs))
        return self._tables[key]

    def _tabulate(self, node: expr.Node, knobs: tuple[str, ...]) -> list:
        """Values over every combination of ``knobs``, built bottom-up from the children's
        tables (each subexpression is computed once per combination of the knobs it reads)."""
        if isinstance(node, expr.Const):
            return [node.value]
        if isinstance(node, expr.Name):
            if node.name in self.domains:
                return list(self.domains[node.name])
            if node.name in self.rules.derived:
                return self.table(self.rules.derived[node.name]).values
            return [self.evaluator.constants[node.name]]
        columns = [self._spread(self.table(child), knobs) for child in expr.children(node)]
        return [combine(node, row, self.evaluator.tables) for row in zip(*columns)]

    def _spread(self, child: Table, knobs: tuple[str, ...]) -> list:
        """A child's values laid out over the combinations of the (larger) ``knobs``."""
        if child.knobs == knobs:
            return child.values
        positions = [knobs.index(knob) for knob in child.knobs]
        sizes = [len(self.domains[knob]) for knob in child.knobs]
        spread = []
        for combination in itertools.product(*(range(len(self.domains[knob])) for knob in knobs)):
            index = 0
            for position, size in zip(positions, sizes):
                index = index * size + combination[position]
            spread.append(child.values[index])
        return spread

    def bounds(self, node: expr.Node) -> tuple[float, float]:
        """Interval containing every value the node can take."""
        key = id(node)
        if key not in self._bounds:
            self._bounds[key] = self._compute_bounds(node)
        return self._bounds[key]

    def _compute_bounds(self, node: expr.Node) -> tuple[float, float]:
        table = self.table(node)
        if table is not None:
            numbers = [number for number in _numbers(table) if number is not None] or [0.0]
            return min(numbers), max(numbers)
        if isinstance(node, expr.Name):
            return self.bounds(self.rules.derived[node.name])
        if isinstance(node, expr.Unary) and node.op == "-":
            low, high = self.bounds(node.operand)
            return -high, -low
        if isinstance(node, expr.Binary) and node.op in ("*", "/") and self._rewrite(node) is not None:
            return self.bounds(self._rewrite(node))
        if isinstance(node, expr.Binary) and node.op in ("+", "-", "*", "/"):
            left, right = self.table(node.left), self.table(node.right)
            if left is not None and right is not None and node.op != "/":
                return self._paired_bounds(node.op, left, right)
            (a, b), (c, d) = self.bounds(node.left), self.bounds(node.right)
            if node.op == "+":
                return a + c, b + d
            if node.op == "-":
                return a - d, b - c
            if node.op == "/":
                if c <= 0 <= d:
                    raise self._too_large(node, "a divisor that cannot be zero")
                c, d = 1 / d, 1 / c
            products = [a * c, a * d, b * c, b * d]
            return min(products), max(products)
        if isinstance(node, expr.Call) and node.function in ("min", "max"):
            pairs = [self.bounds(arg) for arg in node.args]
            pick = min if node.function == "min" else max
            return pick(low for low, _ in pairs), pick(high for _, high in pairs)
        if isinstance(node, expr.IfElse):
            (a, b), (c, d) = self.bounds(node.then), self.bounds(node.otherwise)
            return min(a, c), max(b, d)
        if isinstance(node, (expr.Binary, expr.Unary)):  # comparisons and logic
            return 0.0, 1.0
        raise self._too_large(node, "fewer knob combinations")

    def _paired_bounds(self, op: str, left: Table, right: Table) -> tuple[float, float]:
        """Bounds of ``left op right`` for two tables, exact where they share knobs: both sides are
        ranged per value of the shared knobs, so a knob cannot take two values at once."""
        shared = sorted(set(left.knobs) & set(right.knobs))

        def ranges(table: Table) -> dict:
            found: dict[tuple, tuple[float, float]] = {}
            rows = itertools.product(*(self.domains[knob] for knob in table.knobs))
            for row, value in zip(rows, _numbers(table)):
                if value is None:
                    continue
                key = tuple(row[table.knobs.index(knob)] for knob in shared)
                low, high = found.get(key, (value, value))
                found[key] = (min(low, value), max(high, value))
            return found

        right_ranges, lows, highs = ranges(right), [], []
        for key, (a, b) in ranges(left).items():
            if key not in right_ranges:
                continue
            c, d = right_ranges[key]
            candidates = {"+": [a + c, b + d], "-": [a - d, b - c], "*": [a * c, a * d, b * c, b * d]}[op]
            lows.append(min(candidates))
            highs.append(max(candidates))
        return (min(lows), max(highs)) if lows else (0.0, 0.0)

    def _too_large(self, node: expr.Node, wanted: str) -> InputError:
        knobs = sorted(self.knobs_of(node))
        size = math.prod(len(self.domains[knob]) for knob in knobs)
        return InputError(self.problem.file, "knobs",
                          f"{wanted}: `{expr.render(node)}` reads {', '.join(knobs)} "
                          f"({size} combinations, tabulation limit {TABLE_LIMIT}); pin or narrow some of them")

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
            return self._element([None if number is None else round(number / unit) for number in _numbers(table)],
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
        raise self._too_large(node, "fewer knob combinations")

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

    def _terms(self, node: expr.Node, sign: int = 1) -> list[tuple[int, expr.Node]]:
        """The signed addends of a sum that is too large to tabulate (looking through derived names)."""
        if self.table(node) is None:
            if isinstance(node, expr.Name) and node.name in self.rules.derived:
                return self._terms(self.rules.derived[node.name], sign)
            if isinstance(node, expr.Binary) and node.op in ("+", "-"):
                return self._terms(node.left, sign) + self._terms(node.right, sign if node.op == "+" else -sign)
            if self._splittable(node):  # (a if c else b) = [c] * a + [not c] * b
                return [term for condition, branch in self._branches(node)
                        for term in self._terms(self._keep(expr.Binary("*", condition, branch)), sign)]
        return [(sign, node)]

    def _splittable(self, node: expr.Node) -> bool:
        return isinstance(node, expr.IfElse) and self.table(node.condition) is not None

    def _branches(self, node: expr.IfElse) -> list[tuple[expr.Node, expr.Node]]:
        """(indicator, branch) pairs of a conditional, leaving out branches that are zero."""
        pairs = [(node.condition, node.then), (expr.Unary("not", node.condition), node.otherwise)]
        return [(self._keep(expr.IfElse(condition, expr.Const(1), expr.Const(0))), branch)
                for condition, branch in pairs if branch != expr.Const(0)]

    def _keep(self, node: expr.Node) -> expr.Node:
        self._rewritten.append(node)  # keep rewritten trees alive: caches are keyed by id()
        return node

    def _distributed(self, node: expr.Binary) -> expr.Node | None:
        """Rewrite (a + b) * c as a*c + b*c, and (a + b) / c as a/c + b/c, when a factor is a sum:
        each smaller product may then be tabulated exactly instead of multiplied in CP-SAT."""
        left = self._terms(node.left)
        right = self._terms(node.right) if node.op == "*" else [(1, node.right)]
        if len(left) * len(right) == 1:
            return None
        total = None
        for (left_sign, left_term), (right_sign, right_term) in itertools.product(left, right):
            term = expr.Binary(node.op, left_term, right_term)
            if total is None:
                total = term if left_sign * right_sign > 0 else expr.Unary("-", term)
            else:
                total = expr.Binary("+" if left_sign * right_sign > 0 else "-", total, term)
        return self._keep(total)

    def _factors(self, node: expr.Node, power: int = 1) -> list[tuple[expr.Node, int]]:
        """The factors of a product/quotient chain, with powers +-1 (split to the leaves, so the
        regrouping can pair factors that read the same knobs)."""
        if id(node) not in self._regrouped:
            if isinstance(node, expr.Name) and node.name in self.rules.derived:
                return self._factors(self.rules.derived[node.name], power)
            if isinstance(node, expr.Binary) and node.op in ("*", "/"):
                return self._factors(node.left, power) + self._factors(node.right, power if node.op == "*" else -power)
            if power > 0 and self._splittable(node) and len(self._branches(node)) == 1:
                (indicator, branch), = self._branches(node)  # (x if c else 0) = [c] * x
                return [(indicator, 1)] + self._factors(branch, power)
        return [(node, power)]

    def _regrouped_chain(self, node: expr.Binary) -> expr.Node | None:
        """Reassociate a chain a * b / c * d ... into as few groups as possible, each reading
        at most TABLE_LIMIT knob combinations, so each group is one exact table and CP-SAT
        multiplies only the groups."""
        factors = self._factors(node)
        groups = [(self.knobs_of(factor), [(factor, power)]) for factor, power in factors]
        while len(groups) > 1:
            size, i, j = min((self._size(a[0] | b[0]), i, j) for i, a in enumerate(groups)
                             for j, b in enumerate(groups) if i < j)
            if size > TABLE_LIMIT:
                break
            merged = (groups[i][0] | groups[j][0], groups[i][1] + groups[j][1])
            groups = [group for k, group in enumerate(groups) if k not in (i, j)] + [merged]
        if len(groups) >= len(factors):
            return None
        chain = None
        for _, members in groups:
            group = expr.Const(1)
            for factor, power in members:
                group = expr.Binary("*" if power > 0 else "/", group, factor)
            chain = group if chain is None else expr.Binary("*", chain, group)
        self._keep(chain)
        self._regrouped.add(id(chain))
        return chain

    def _size(self, knobs: frozenset) -> int:
        return math.prod(len(self.domains[knob]) for knob in knobs)

    def _rewrite(self, node: expr.Binary) -> expr.Node | None:
        """The distributed or regrouped form of a product/quotient, built once per node."""
        if id(node) not in self._rewrites:
            self._rewrites[id(node)] = self._distributed(node) or self._regrouped_chain(node)
        return self._rewrites[id(node)]

    def _product(self, node: expr.Binary, unit: float):
        rewritten = self._rewrite(node)
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
        result = self._new_int(node, unit)
        self.model.AddDivisionEquality(result, raw, 2 ** -shift)
        return result

    def _quotient(self, node: expr.Binary, unit: float):
        rewritten = self._rewrite(node)
        if rewritten is not None:
            return self.numeric(rewritten, unit)
        low, high = self.bounds(node.right)
        if low <= 0 <= high:
            raise self._too_large(node, "a divisor that cannot be zero")
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
        raise self._too_large(node, "fewer knob combinations")

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
        cases = [self._keep(self._pinned(node, knob, value)) for value in self.domains[knob]]
        bounds = [self.bounds(case) for case in cases]
        unit = unit_for(max(max(abs(low), abs(high)) for low, high in bounds), SUM_BITS)
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
        return self.numeric(node, unit_for(magnitude, SUM_BITS))

    def _pinned(self, node: expr.Node, knob: str, value) -> expr.Node:
        """``node`` with ``knob`` replaced by ``value``, derived quantities that read it inlined."""
        if knob not in self.knobs_of(node):
            return node
        if isinstance(node, expr.Name):
            return expr.Const(value) if node.name == knob else self._pinned(self.rules.derived[node.name], knob, value)
        return self._keep(expr.rebuilt(node, [self._pinned(child, knob, value) for child in expr.children(node)]))

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
        return CompiledModel(self.model, self.index, self.chosen, guards, self.objective_resolution)


def _pad(low: float, high: float, unit: float) -> int:
    """Units a value of this range may be off by: the rounding a product or quotient of
    FACTOR_BITS-wide factors can add (a few parts in 2**FACTOR_BITS)."""
    return math.ceil(max(abs(low), abs(high)) / unit * 2.0 ** (4 - FACTOR_BITS)) + 2


def _numbers(table: Table) -> list[float | None]:
    """A table's values as floats. An infinite value (x / 0: fp8 on a GPU without fp8 units) becomes
    twice the largest finite magnitude, so that a rule comparing it fails as it does in the evaluator
    (and stays guarded); an undefined one (a failed look-up, 0 / 0) is None: that combination is no plan."""
    numbers = [None if value is UNDEFINED else float(value) for value in table.values]
    finite = [abs(number) for number in numbers if number is not None and math.isfinite(number)]
    huge = 2 * max(finite, default=1.0)
    return [None if number is None or math.isnan(number)
            else number if math.isfinite(number) else math.copysign(huge, number) for number in numbers]
