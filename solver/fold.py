"""A reduction before compiling: conditionals whose condition reads no knob are replaced by the
branch the goal takes (its constants decide them: `data.steps > 0`, `task == 'pretrain'`), so the
compiler never bounds or tabulates a branch no plan can reach. Receives a Problem, returns the
same Problem with folded rules; the evaluator gives every plan the same values before and after.
"""

from __future__ import annotations

import dataclasses

from . import expr
from .goal import Problem


def fold(problem: Problem) -> Problem:
    rules, evaluator = problem.rules, problem.evaluator()
    memo: dict[int, expr.Node] = {}

    def walk(node: expr.Node) -> expr.Node:
        if id(node) in memo:
            return memo[id(node)]
        if isinstance(node, expr.IfElse) and not rules.knobs_read(node.condition):
            result = walk(node.then if evaluator.constant(node.condition) else node.otherwise)
        else:
            result = expr.rebuilt(node, [walk(child) for child in expr.children(node)])
        memo[id(node)] = result
        return result

    folded = dataclasses.replace(
        rules, derived={name: walk(node) for name, node in rules.derived.items()},
        constraints=[dataclasses.replace(c, condition=walk(c.condition)) for c in rules.constraints],
        _knobs_memo={})
    return dataclasses.replace(problem, rules=folded)

