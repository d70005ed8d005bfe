"""Tabulate: the exact value of a subexpression for every combination of the knobs it reads.

Receives a rule tree and the knob domains; returns a Table (the knobs, in index order, and one
value per combination, row-major) or None when the combinations exceed the limit. Tables are
built bottom-up from the children's tables with the evaluator's operator table, so every look-up,
power, ceiling, string comparison and constant is exact before CP-SAT sees it; a combination
where the expression fails (a missing look-up key, a math error) is UNDEFINED, no plan.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

from . import expr
from .evaluate import Evaluator, decided, operation
from .packs import RuleSet

TABLE_LIMIT = 4096          # most knob combinations one tabulated subexpression may span
PREFERRED_TABLE_LIMIT = 512  # what the search tabulates first (search.py): smaller tables, smaller models
UNDEFINED = object()        # a table entry whose expression fails there (missing look-up key, math error)


@dataclass
class Table:
    knobs: tuple[str, ...]     # knobs the subexpression reads, in index order
    values: list               # exact value for every combination (row-major)

    def numbers(self) -> list[float | None]:
        """The values as floats. An infinite value (x / 0: fp8 on a GPU without fp8 units) becomes
        twice the largest finite magnitude, so that a rule comparing it fails as it does in the
        evaluator (and stays guarded); an undefined one (a failed look-up, 0 / 0) is None."""
        numbers = [None if value is UNDEFINED else float(value) for value in self.values]
        finite = [abs(number) for number in numbers if number is not None and math.isfinite(number)]
        huge = 2 * max(finite, default=1.0)
        return [None if number is None or math.isnan(number)
                else number if math.isfinite(number) else math.copysign(huge, number) for number in numbers]


def combine(node: expr.Node, columns: list[list], tables: dict) -> list:
    """One node's values from its children's values (one column per child), by the evaluator's
    operation() and decided(); UNDEFINED spreads only through the operands the evaluator reads (the
    branch taken, the right side of ``and``/``or`` when the left does not decide)."""
    rows = zip(*columns)
    if isinstance(node, expr.IfElse):
        return [UNDEFINED if condition is UNDEFINED else (then if condition else otherwise)
                for condition, then, otherwise in rows]
    if isinstance(node, expr.Binary) and node.op in ("and", "or"):
        return [left if left is UNDEFINED else bool(left) if decided(node.op, left)
                else right if right is UNDEFINED else bool(right) for left, right in rows]
    apply = operation(node)
    if isinstance(node, expr.Lookup):
        apply = functools.partial(apply, tables)
    values = []
    for row in rows:
        if UNDEFINED in row:
            values.append(UNDEFINED)
            continue
        try:
            values.append(apply(*row))
        except (ArithmeticError, TypeError, ValueError, KeyError):
            values.append(UNDEFINED)
    return values


class Tabulator:
    """Tables of the subexpressions of one rule set over one set of knob domains (cached per node)."""

    def __init__(self, rules: RuleSet, domains: dict, evaluator: Evaluator, limit: int = TABLE_LIMIT):
        self.rules, self.domains, self.evaluator, self.limit = rules, domains, evaluator, limit
        self._knobs: dict[int, frozenset] = {}
        self._tables: dict[int, Table | None] = {}
        self._kept: list[expr.Node] = []

    def keep(self, node: expr.Node) -> expr.Node:
        """Keep a tree built during compilation alive: the caches are keyed by id()."""
        self._kept.append(node)
        return node

    def knobs_of(self, node: expr.Node) -> frozenset:
        key = id(node)
        if key not in self._knobs:  # a name's knobs are kept by the rule set; a tree's are its parts'
            self._knobs[key] = (self.rules.knobs_read(node) if isinstance(node, expr.Name)
                                else frozenset().union(*map(self.knobs_of, expr.children(node))))
        return self._knobs[key]

    def size(self, knobs) -> int:
        """Combinations of ``knobs``."""
        return math.prod(len(self.domains[knob]) for knob in knobs)

    def table(self, node: expr.Node) -> Table | None:
        """Exact values over the knobs the node reads, or None when there are too many combinations;
        a table is shared through the rule set with every compilation whose domains of those knobs
        are the same (a goal's repairs)."""
        key = id(node)
        if key not in self._tables:
            knobs = tuple(sorted(self.knobs_of(node)))
            if self.size(knobs) > self.limit:
                self._tables[key] = None
            else:
                shared = (key, tuple(self.domains[knob] for knob in knobs))
                if shared not in self.rules._tables_memo:  # the node is kept with its table: its id stays its own
                    self.rules._tables_memo[shared] = (node, Table(knobs, self._tabulate(node, knobs)))
                self._tables[key] = self.rules._tables_memo[shared][1]
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
        return combine(node, columns, self.evaluator.tables)

    def _spread(self, child: Table, knobs: tuple[str, ...]) -> list:
        """A child's values laid out over the combinations of the (larger) ``knobs``."""
        if child.knobs == knobs:
            return child.values
        strides = {knob: math.prod(len(self.domains[other]) for other in child.knobs[position + 1:])
                   for position, knob in enumerate(child.knobs)}
        indices = [0]  # the child's row for each combination of ``knobs``, built knob by knob (row-major)
        for knob in knobs:
            steps = [value * strides.get(knob, 0) for value in range(len(self.domains[knob]))]
            indices = [index + step for index in indices for step in steps]
        return [child.values[index] for index in indices]
