"""A reduction for the objective only: read it as it stands in every plan the search returns.

A hard rule ``name == expression`` (the global batch: ``sequences_per_step == global_batch_target``)
holds in every plan that passes, so inside the objective ``name`` may be read as ``expression``:
the value of each passing plan is unchanged, while interval bounds no longer multiply extremes
that no passing plan combines (steps from the largest micro-batch, accumulation and data-parallel
degree together, times the step time of the smallest). The objective's fixed-point unit follows
its bound, so a tight bound is what lets CP-SAT order plans finely.

Receives a (folded) Problem, returns the objective's tree: derived names on the way to a
substituted name are inlined, every other name is left as it is (shared with the constraints,
whose trees are never changed, so conflicts and relaxed rules keep the rule's exact meaning).
"""

from __future__ import annotations

from . import expr
from .goal import Problem


def objective_tree(problem: Problem) -> expr.Node:
    """The objective's tree with the equalities substituted; one tree per objective and set of
    equalities for all the variants of a goal (fold.py), so that they share its tables."""
    equal = equalities(problem)
    key = (problem.objective, tuple((name, id(node)) for name, node in equal.items()))
    memo = problem.rules._trees_memo
    if key not in memo:  # the equalities' nodes are kept with the tree: their ids stay their own
        memo[key] = (_substituted(problem, equal), tuple(equal.values()))
    return memo[key][0]


def _substituted(problem: Problem, equal: dict[str, expr.Node]) -> expr.Node:
    objective = expr.Name(problem.objective)
    if not equal:
        return objective
    derived = problem.rules.derived
    reaches: dict[str, bool] = {}

    def reads_equal(name: str) -> bool:
        """Whether ``name``'s definition reads a substituted name, directly or through others."""
        if name not in reaches:
            reaches[name] = False  # a cycle cannot arise (the derived graph is acyclic); this ends it anyway
            reaches[name] = any(other in equal or (other in derived and reads_equal(other))
                                for other in expr.names(derived[name]))
        return reaches[name]

    def walk(node: expr.Node, replaced: frozenset) -> expr.Node:
        if isinstance(node, expr.Name):
            if node.name in equal and node.name not in replaced:
                return walk(equal[node.name], replaced | {node.name})
            if node.name in derived and reads_equal(node.name):
                return walk(derived[node.name], replaced)
            return node
        return expr.rebuilt(node, [walk(child, replaced) for child in expr.children(node)])

    return walk(objective, frozenset())


def equalities(problem: Problem) -> dict[str, expr.Node]:
    """Derived name -> the expression a hard rule holds it equal to in every passing plan (an
    ``and`` of rules, or an ``or`` whose other side the goal's constants make false)."""
    rules, evaluator = problem.rules, problem.evaluator()
    found: dict[str, expr.Node] = {}

    def collect(node: expr.Node) -> None:
        if isinstance(node, expr.Binary) and node.op == "and":
            collect(node.left)
            collect(node.right)
        elif isinstance(node, expr.Binary) and node.op == "or":
            for side, other in ((node.left, node.right), (node.right, node.left)):
                if not rules.knobs_read(side) and not evaluator.constant(side):
                    collect(other)
        elif isinstance(node, expr.Binary) and node.op == "==":
            for side, other in ((node.left, node.right), (node.right, node.left)):
                if isinstance(side, expr.Name) and side.name in rules.derived and side.name not in expr.names(other):
                    found.setdefault(side.name, other)
                    return

    for constraint in rules.constraints:
        if constraint.severity == "error":
            collect(constraint.condition)
    return found
