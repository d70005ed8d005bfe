"""Bound: an interval containing every value a subexpression can take.

Receives a rule tree (through a Tabulator and a Rewriter); returns (low, high). A tree that
tabulates is bounded exactly by its table; a sum, product or quotient of two tables by pairing
their values per value of the knobs they share (a knob cannot take two values at once); anything
larger by interval arithmetic over its children, after its rewrite. The encoder picks each
term's fixed-point unit from these bounds.
"""

from __future__ import annotations

import itertools

from . import expr
from .errors import InputError
from .rewrite import Rewriter
from .tabulate import Table, Tabulator


class Bounds:
    """Bounds of the subexpressions of one compilation (cached per node)."""

    def __init__(self, tabulator: Tabulator, rewriter: Rewriter, file: str):
        self.tabulator, self.rewriter, self.file = tabulator, rewriter, file
        self.rules, self.domains = tabulator.rules, tabulator.domains
        self._bounds: dict[int, tuple[float, float]] = {}

    def __call__(self, node: expr.Node) -> tuple[float, float]:
        key = id(node)
        if key not in self._bounds:
            self._bounds[key] = self._compute(node)
        return self._bounds[key]

    def _compute(self, node: expr.Node) -> tuple[float, float]:
        table = self.tabulator.table(node)
        if table is not None:
            numbers = [number for number in table.numbers() if number is not None] or [0.0]
            return min(numbers), max(numbers)
        if isinstance(node, expr.Name):
            return self(self.rules.derived[node.name])
        if isinstance(node, expr.Unary) and node.op == "-":
            low, high = self(node.operand)
            return -high, -low
        if isinstance(node, expr.Binary) and node.op in ("*", "/") and self.rewriter.product(node) is not None:
            return self(self.rewriter.product(node))
        if isinstance(node, expr.Binary) and node.op in ("+", "-", "*", "/"):
            return self._arithmetic(node)
        if isinstance(node, expr.Call) and node.function in ("min", "max"):
            pairs = [self(arg) for arg in node.args]
            pick = min if node.function == "min" else max
            return pick(low for low, _ in pairs), pick(high for _, high in pairs)
        if isinstance(node, expr.IfElse):
            (a, b), (c, d) = self(node.then), self(node.otherwise)
            return min(a, c), max(b, d)
        if isinstance(node, (expr.Binary, expr.Unary)):  # comparisons and logic
            return 0.0, 1.0
        raise self.too_large(node, "fewer knob combinations")

    def _arithmetic(self, node: expr.Binary) -> tuple[float, float]:
        left, right = self.tabulator.table(node.left), self.tabulator.table(node.right)
        if left is not None and right is not None and node.op != "/":
            return self._paired(node.op, left, right)
        (a, b), (c, d) = self(node.left), self(node.right)
        if node.op == "+":
            return a + c, b + d
        if node.op == "-":
            return a - d, b - c
        if node.op == "/":
            if c <= 0 <= d:
                raise self.too_large(node, "a divisor that cannot be zero")
            c, d = 1 / d, 1 / c
        products = [a * c, a * d, b * c, b * d]
        return min(products), max(products)

    def _paired(self, op: str, left: Table, right: Table) -> tuple[float, float]:
        """Bounds of ``left op right`` for two tables, exact where they share knobs: both sides are
        ranged per value of the shared knobs, so a knob cannot take two values at once."""
        shared = sorted(set(left.knobs) & set(right.knobs))

        def ranges(table: Table) -> dict:
            found: dict[tuple, tuple[float, float]] = {}
            rows = itertools.product(*(self.domains[knob] for knob in table.knobs))
            for row, value in zip(rows, table.numbers()):
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

    def too_large(self, node: expr.Node, wanted: str) -> "TooLarge":
        """The error for a subexpression no reduction brings within reach (it names the knobs)."""
        knobs = sorted(self.tabulator.knobs_of(node))
        return TooLarge(self.file, "knobs",
                        f"{wanted}: `{expr.render(node)}` reads {', '.join(knobs)} "
                        f"({self.tabulator.size(knobs)} combinations, tabulation limit {self.tabulator.limit}); "
                        f"pin or narrow some of them")


class TooLarge(InputError):
    """A subexpression that neither tabulates within the limit nor rebuilds from its parts."""
