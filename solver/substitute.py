"""A reduction for the compiler only: read the rules as they stand in every plan that passes.

A hard rule ``name == expression`` (the global batch: ``sequences_per_step == global_batch_target``)
holds in every plan the search returns, so every other reader of ``name`` may read ``expression``
instead: each passing plan keeps its values, while interval bounds no longer multiply extremes that
no passing plan combines (steps from the largest micro-batch, accumulation and data-parallel degree
together, times the step time of the smallest). Where ``name`` is a product with a knob among its
factors, the rule is also solved for that knob (``grad_accum = global_batch_target / (micro_batch *
dp)``) and arithmetic that reads the knob reads the solution, so the number of micro-steps meets the
micro-batch's size in each product. The fixed-point units follow the bounds, so tight bounds are
what let CP-SAT order plans finely and hold a deadline close.

Receives a (folded) Problem, returns the Problem the compiler encodes: the derived quantities that
read a substituted name (or, in arithmetic, a solved knob) directly are rebuilt with the expression
in its place (the rule itself still reads the name and the knob). The evaluator keeps the original
rules, so a plan that breaks the rule is still judged - and explained - as it would run. A core of
rules found on the compiled model must keep the rules substituted here (``sources``): with such a
rule switched off, the compiled model still reads its equality.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

from . import expr
from .errors import InputError
from .goal import Problem

DIVISOR_CHECKED_UP_TO = 4096  # knob combinations over which a solved knob's divisors are checked non-zero


def compile_view(problem: Problem) -> Problem:
    """``problem`` with every equality substituted; one set of rebuilt trees per goal's variants
    (fold.py's shared caches), so that they share their tables."""
    equal = equalities(problem)
    if not equal:
        return problem
    isolated = isolated_knobs(problem, equal)
    rules = problem.rules
    memo = rules._trees_memo
    derived = dict(rules.derived)
    replacing = {**{name: node for name, (node, _) in equal.items()},
                 **{knob: node for knob, (node, _) in isolated.items()}}
    substituted = tuple((name, id(node)) for name, node in sorted(replacing.items()))
    # a subtree's table depends on what the names below it mean: the view keeps tables of its own
    # (kept with the nodes its key names, so that their ids stay their own)
    tables = memo.setdefault(("tables", substituted), ({}, tuple(replacing.values())))[0]
    for name, node in rules.derived.items():
        # an isolated knob keeps its place in the definition it was solved from (the rule's own test)
        solved = {knob for knob, (_, owner) in isolated.items() if owner != name}
        readers = expr.names(node) & (set(equal) | solved) - {name}
        if readers:
            key = (name, tuple((other, id(replacing[other])) for other in sorted(readers)))
            if key not in memo:  # the new tree is kept with the nodes it was built from: their ids stay their own
                memo[key] = (_replaced(node, {other: replacing[other] for other in readers}, set(isolated)), node,
                             tuple(replacing[other] for other in readers))
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


def isolated_knobs(problem: Problem, equal: dict) -> dict[str, tuple[expr.Node, str]]:
    """Knob -> (the expression it equals in every passing plan, the derived name whose equality gives
    it): from ``name == other`` where ``name`` is a product such as ``micro_batch * grad_accum * dp``,
    the factor knob of the widest range, solved for (``grad_accum = other / (micro_batch * dp)``).
    Its readers' products then pair what passing plans pair: the accumulation's micro-steps and the
    micro-batch's size, whose interval bounds multiplied apart span the whole global batch squared."""
    rules, found = problem.rules, {}
    for name, (other, _) in equal.items():
        factors = expr.factors_of(rules.derived[name])
        candidates = [(_spread(problem.domains[node.name]), node.name, index)
                      for index, (node, power) in enumerate(factors)
                      if isinstance(node, expr.Name) and node.name in problem.domains and power == 1
                      and node.name not in rules.knobs_read(other)
                      and all(node.name not in rules.knobs_read(factor) for i, (factor, _) in enumerate(factors) if i != index)]
        candidates = [candidate for candidate in candidates if candidate[0] > 1 and candidate[1] not in found
                      and _never_zero(problem, [factor for i, (factor, _) in enumerate(factors) if i != candidate[2]])]
        if candidates:
            _, knob, index = max(candidates)
            key = ("isolated", knob, id(other))  # one tree per goal's variants, so that they share its tables
            if key not in rules._trees_memo:  # kept with the node its key names: the id stays its own
                rules._trees_memo[key] = (expr.Binary("/", other, expr.product(factors[:index] + factors[index + 1:])),
                                          other)
            found[knob] = (rules._trees_memo[key][0], name)
    return found


def _never_zero(problem: Problem, factors: list[expr.Node]) -> bool:
    """Whether each of ``factors`` (the divisors of a solved knob) is a finite non-zero number for every
    combination of the knobs it reads, as the evaluator computes it; too many combinations to check
    count as no (a quotient whose divisor may be zero cannot be compiled)."""
    evaluator = problem.evaluator()
    for factor in factors:
        knobs = sorted(problem.rules.knobs_read(factor))
        if math.prod(len(problem.domains[knob]) for knob in knobs) > DIVISOR_CHECKED_UP_TO:
            return False
        for values in itertools.product(*(problem.domains[knob] for knob in knobs)):
            try:
                value = evaluator.value(factor, dict(zip(knobs, values)), {})
            except (InputError, ArithmeticError, TypeError, ValueError, KeyError):  # the rule packs' errors are
                return False                                                      # reported where they are compiled
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not value:
                return False
    return True


def _spread(values) -> float:
    """How many times its smallest value a positive numeric domain's largest is (1 otherwise)."""
    numbers = [value for value in values if isinstance(value, (int, float)) and not isinstance(value, bool)]
    return max(numbers) / min(numbers) if numbers and len(numbers) == len(values) and min(numbers) > 0 else 1.0


def _replaced(node: expr.Node, replacement: dict[str, expr.Node], arithmetic_only: set[str],
              in_arithmetic: bool = False) -> expr.Node:
    """``node`` with names replaced; the names in ``arithmetic_only`` (isolated knobs) only where
    they are terms or factors of arithmetic, so that a test such as ``grad_accum > 1`` keeps reading
    its one knob (and its small table)."""
    if isinstance(node, expr.Name):
        replaced = node.name in replacement and (in_arithmetic or node.name not in arithmetic_only)
        return replacement[node.name] if replaced else node
    arithmetic = (isinstance(node, expr.Binary) and node.op in expr.ARITHMETIC.values()
                  or isinstance(node, expr.Unary) and node.op == "-"
                  or isinstance(node, expr.Call) and node.function in ("min", "max"))
    parts = [_replaced(child, replacement, arithmetic_only,
                       arithmetic or (isinstance(node, expr.IfElse) and child is not node.condition and in_arithmetic))
             for child in expr.children(node)]
    return expr.rebuilt(node, parts)
