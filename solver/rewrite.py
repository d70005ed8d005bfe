"""Rewrite: products, quotients and conditionals too large to tabulate, turned into equivalent
trees whose parts tabulate.

Receives a rule tree (through a Tabulator, which says which subtrees tabulate); returns a new tree
with the same value for every combination of the knobs, or None when no rewrite helps:

* distribute: (a + b) * c -> a*c + b*c, and (a + b) / c -> a/c + b/c, when a factor is a sum;
* split conditionals: (x if c else y) -> [c] * x + [not c] * y, where c tabulates;
* regroup: a * b / c * d ... reassociated into as few groups as possible, each one exact table;
* pin: a tree with one knob replaced by a value (the objective's cases).
"""

from __future__ import annotations

from . import expr
from .tabulate import Tabulator


class Rewriter:
    """The rewrites of one compilation (each built once per node)."""

    def __init__(self, tabulator: Tabulator):
        self.tabulator, self.rules = tabulator, tabulator.rules
        self._regrouped: set[int] = set()
        self._rewrites: dict[int, expr.Node | None] = {}

    def product(self, node: expr.Binary) -> expr.Node | None:
        """The distributed or regrouped form of a product/quotient, or None."""
        if id(node) not in self._rewrites:
            self._rewrites[id(node)] = self._distributed(node) or self._regrouped_chain(node)
        return self._rewrites[id(node)]

    def pinned(self, node: expr.Node, knob: str, value) -> expr.Node:
        """``node`` with ``knob`` replaced by ``value``, derived quantities that read it inlined."""
        if knob not in self.tabulator.knobs_of(node):
            return node
        if isinstance(node, expr.Name):
            return expr.Const(value) if node.name == knob else self.pinned(self.rules.derived[node.name], knob, value)
        return self.tabulator.keep(expr.rebuilt(node, [self.pinned(child, knob, value)
                                                       for child in expr.children(node)]))

    def _terms(self, node: expr.Node, sign: int = 1) -> list[tuple[int, expr.Node]]:
        """The signed addends of a sum that is too large to tabulate (looking through derived names)."""
        if self.tabulator.table(node) is None:
            if isinstance(node, expr.Name) and node.name in self.rules.derived:
                return self._terms(self.rules.derived[node.name], sign)
            if isinstance(node, expr.Binary) and node.op in ("+", "-"):
                return self._terms(node.left, sign) + self._terms(node.right, sign if node.op == "+" else -sign)
            if self._splittable(node):  # (a if c else b) = [c] * a + [not c] * b
                return [term for condition, branch in self._branches(node)
                        for term in self._terms(self.tabulator.keep(expr.Binary("*", condition, branch)), sign)]
        return [(sign, node)]

    def _splittable(self, node: expr.Node) -> bool:
        return isinstance(node, expr.IfElse) and self.tabulator.table(node.condition) is not None

    def _branches(self, node: expr.IfElse) -> list[tuple[expr.Node, expr.Node]]:
        """(indicator, branch) pairs of a conditional, leaving out branches that are zero."""
        pairs = [(node.condition, node.then), (expr.Unary("not", node.condition), node.otherwise)]
        return [(self.tabulator.keep(expr.IfElse(condition, expr.Const(1), expr.Const(0))), branch)
                for condition, branch in pairs if branch != expr.Const(0)]

    def _distributed(self, node: expr.Binary) -> expr.Node | None:
        """A product/quotient chain with a sum among its factors, as the sum of the chain's products
        with each of its terms: (a + b) * c as a*c + b*c, (a + b) / c as a/c + b/c, and a * (b * (c + d))
        as a*b*c + a*b*d. Each smaller product may then be tabulated exactly, or regrouped so that its
        factors pair what the knobs pair, instead of multiplied apart in CP-SAT."""
        factors = self._factors(node)
        sides = {id(self._named(side)) for side in (node.left, node.right)}
        divisors = frozenset().union(*(self.tabulator.knobs_of(factor) for factor, power in factors if power < 0))
        for index, (factor, power) in enumerate(factors):
            # a sum deeper in the chain only where its terms can cancel against a divisor (a * (b / d *
            # (c + d)): each term's table then pairs the knob it shares with d); every product costs tables
            wanted = id(factor) in sides or self.tabulator.knobs_of(factor) & divisors
            terms = self._terms(factor) if power > 0 and wanted else []
            if len(terms) > 1:
                break
        else:
            return None
        total = None
        for sign, term in terms:
            product = expr.product([(term, 1), *factors[:index], *factors[index + 1:]])
            if total is None:
                total = product if sign > 0 else expr.Unary("-", product)
            else:
                total = expr.Binary("+" if sign > 0 else "-", total, product)
        return self.tabulator.keep(total)

    def _named(self, node: expr.Node) -> expr.Node:
        """The definition of a derived name (any other node as it is)."""
        return self.rules.derived.get(node.name, node) if isinstance(node, expr.Name) else node

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
        at most the table limit's knob combinations, so each group is one exact table and CP-SAT
        multiplies only the groups."""
        factors = self._factors(node)
        groups = [(self.tabulator.knobs_of(factor), [(factor, power)]) for factor, power in factors]
        sizes: dict[tuple[frozenset, frozenset], int] = {}  # combinations of two groups' knobs together

        def together(a: frozenset, b: frozenset) -> int:
            if (a, b) not in sizes:
                sizes[a, b] = self.tabulator.size(a | b)
            return sizes[a, b]
        while len(groups) > 1:
            size, i, j = min((together(a[0], b[0]), i, j) for i, a in enumerate(groups)
                             for j, b in enumerate(groups) if i < j)
            if size > self.tabulator.limit:
                break
            merged = (groups[i][0] | groups[j][0], groups[i][1] + groups[j][1])
            groups = [group for k, group in enumerate(groups) if k not in (i, j)] + [merged]
        if len(groups) >= len(factors):
            return None
        chain = None
        for _, members in groups:
            group = expr.product(members)
            chain = group if chain is None else expr.Binary("*", chain, group)
        self.tabulator.keep(chain)
        self._regrouped.add(id(chain))
        return chain
