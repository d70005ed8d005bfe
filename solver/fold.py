"""A reduction before compiling: conditionals whose condition reads no knob are replaced by the
branch the goal takes (its constants decide them: `data.steps > 0`, `task == 'pretrain'`), so the
compiler never bounds or tabulates a branch no plan can reach. Receives a Problem, returns the
same Problem with folded rules; the evaluator gives every plan the same values before and after.
Variants of one goal (knob domains widened, rules relaxed) fold to the same trees and share one
table cache (tabulate.py), one cache of substituted trees with their tables (substitute.py) and the
plans the evaluator rejected (search.py), so the repairs of an infeasible goal tabulate each
subexpression once and meet each rejected plan once.
"""

from __future__ import annotations

import dataclasses

from . import expr
from .goal import Problem


FOLDS_KEPT = 8  # goals whose folded trees (and tables) are kept: a goal and its repairs' variants


@dataclasses.dataclass
class _Fold:
    """One goal's folded trees by original node, and the tables compiled from them. ``sources``
    holds what the key's ids name, so that no id is reused while the entry lives."""

    sources: tuple
    memo: dict = dataclasses.field(default_factory=dict)
    tables: dict = dataclasses.field(default_factory=dict)
    trees: dict = dataclasses.field(default_factory=dict)
    rejected: dict = dataclasses.field(default_factory=dict)


_FOLDS: dict[tuple, _Fold] = {}


def _entry(problem: Problem) -> _Fold:
    """The fold of this goal's rules and constants, shared by its variants (other knob domains, other
    constraints on: widened knobs, relaxed rules), so that they share trees and tables too."""
    rules = problem.rules
    sources = (rules.derived, rules.params, rules.tables, problem.inputs, problem.input_tables)
    key = tuple(map(id, sources))
    if key not in _FOLDS:
        while len(_FOLDS) >= FOLDS_KEPT:
            _FOLDS.pop(next(iter(_FOLDS)))
        _FOLDS[key] = _Fold(sources)
    return _FOLDS[key]


def fold(problem: Problem) -> Problem:
    rules, evaluator = problem.rules, problem.evaluator()
    entry = _entry(problem)
    memo = entry.memo

    def walk(node: expr.Node) -> expr.Node:
        if id(node) in memo:  # the memo holds the node itself: its id cannot be reused meanwhile
            return memo[id(node)][1]
        if isinstance(node, expr.IfElse) and not rules.knobs_read(node.condition):
            result = walk(node.then if evaluator.constant(node.condition) else node.otherwise)
        else:
            result = expr.rebuilt(node, [walk(child) for child in expr.children(node)])
        memo[id(node)] = (node, result)
        return result

    folded = dataclasses.replace(
        rules, derived={name: walk(node) for name, node in rules.derived.items()},
        constraints=[dataclasses.replace(c, condition=walk(c.condition)) for c in rules.constraints],
        _knobs_memo={}, _tables_memo=entry.tables, _trees_memo=entry.trees,
        _rejected_memo=entry.rejected)
    return dataclasses.replace(problem, rules=folded)

