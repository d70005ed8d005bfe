"""A reduction for the compiler only: read the rules as they stand in every plan that passes.

A hard rule ``name == expression`` (the global batch: ``sequences_per_step == global_batch_target``)
holds in every plan the search returns, so every other reader of ``name`` may read ``expression``
instead: each passing plan keeps its values, while interval bounds no longer multiply extremes that
no passing plan combines (steps from the largest micro-batch, accumulation and data-parallel degree
together, times the step time of the smallest). The objective's fixed-point unit follows its
bound, so a tight bound is what lets CP-SAT order plans finely.

Receives a (folded) Problem, returns the Problem the compiler encodes: the derived quantities that
read a substituted name directly are rebuilt with the expression in its place (the rule itself
still reads the name). The evaluator keeps the original rules, so a plan that breaks the rule is
still judged - and explained - as it would run. A core of rules found on the compiled model must
keep the rules substituted here (``sources``): with such a rule switched off, the compiled model
still reads its equality.
"""

from __future__ import annotations

import dataclasses

from . import expr
from .goal import Problem


def compile_view(problem: Problem) -> Problem:
    """``problem`` with every equality substituted; one set of rebuilt trees per goal's variants
    (fold.py's shared caches), so that they share their tables."""
    equal = equalities(problem)
    if not equal:
        return problem
    rules = problem.rules
    memo = rules._trees_memo
    derived = dict(rules.derived)
    substituted = tuple((name, id(node)) for name, (node, _) in sorted(equal.items()))
    # a subtree's table depends on what the names below it mean: the view keeps tables of its own
    # (kept with the nodes its key names, so that their ids stay their own)
    tables = memo.setdefault(("tables", substituted), ({}, tuple(node for node, _ in equal.values())))[0]
    for name, node in rules.derived.items():
        readers = expr.names(node) & set(equal) - {name}
        if readers:
            key = (name, tuple((other, id(equal[other][0])) for other in sorted(readers)))
            if key not in memo:  # the new tree is kept with the nodes it was built from: their ids stay their own
                memo[key] = (_replaced(node, {other: equal[other][0] for other in readers}), node,
                             tuple(equal[other][0] for other in readers))
            derived[name] = memo[key][0]
    return dataclasses.replace(problem, rules=dataclasses.replace(rules, derived=derived, _knobs_memo={},
                                                                  _tables_memo=tables))


def sources(problem: Problem) -> set[str]:
    """The rules whose equalities compile_view substitutes."""
    return {rule for _, rule in equalities(problem).values()}


def equalities(problem: Problem) -> dict[str, tuple[expr.Node, str]]:
    """Derived name -> (the expression a hard rule holds it equal to in every passing plan, the
    rule's id): a rule that is an ``and`` of such equalities, or an ``or`` whose other side the
    goal's constants make false."""
    rules, evaluator = problem.rules, problem.evaluator()
    found: dict[str, tuple[expr.Node, str]] = {}

    def collect(node: expr.Node, rule: str) -> None:
        if isinstance(node, expr.Binary) and node.op == "and":
            collect(node.left, rule)
            collect(node.right, rule)
        elif isinstance(node, expr.Binary) and node.op == "or":
            for side, other in ((node.left, node.right), (node.right, node.left)):
                if not rules.knobs_read(side) and not evaluator.constant(side):
                    collect(other, rule)
        elif isinstance(node, expr.Binary) and node.op == "==":
            for side, other in ((node.left, node.right), (node.right, node.left)):
                if (isinstance(side, expr.Name) and side.name in rules.derived and side.name not in found
                        and side.name not in _names_through(rules, other)):
                    found[side.name] = (other, rule)
                    return

    for constraint in rules.constraints:
        if constraint.severity == "error":
            collect(constraint.condition, constraint.id)
    return found


def _names_through(rules, node: expr.Node) -> set[str]:
    """Every name ``node`` reads, directly or through derived quantities (a substitution must not
    make a name read itself)."""
    seen, todo = set(), list(expr.names(node))
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += expr.names(rules.derived[name]) if name in rules.derived else []
    return seen


def _replaced(node: expr.Node, replacement: dict[str, expr.Node]) -> expr.Node:
    if isinstance(node, expr.Name):
        return replacement.get(node.name, node)
    return expr.rebuilt(node, [_replaced(child, replacement) for child in expr.children(node)])
