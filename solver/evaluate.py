"""The independent evaluator: every rule computed in plain Python on one concrete config.

It backs `tplan check`, fills the estimate of a plan, and is the oracle the solver is
tested against (exhaustive search over small spaces). It knows nothing of CP-SAT.
"""

from __future__ import annotations

import functools
import math
import operator
from collections.abc import Callable
from dataclasses import dataclass, field

from . import expr
from .errors import InputError
from .packs import Constraint, RuleSet, table_key

def _divide(left, right):
    """IEEE division: x / 0 is +-inf (a plan needing infinite time or memory fails its rule)."""
    if right == 0:
        return math.nan if left == 0 else math.copysign(math.inf, left)
    return left / right


def _power(base, exponent):
    """Powers in floating point: an exponent tower overflows (an error) instead of running forever."""
    return math.pow(base, exponent)


ARITHMETIC = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": _divide,
              "%": operator.mod, "**": _power, "<": operator.lt, "<=": operator.le,
              ">": operator.gt, ">=": operator.ge, "==": operator.eq, "!=": operator.ne}
FUNCTIONS = {"min": min, "max": max, "abs": abs, "ceil": math.ceil, "floor": math.floor,
             "log2": math.log2, "sqrt": math.sqrt}


def operation(node: expr.Node) -> Callable:
    """What a node that reads all its operands (every node but a constant, a name, ``and``, ``or`` and
    ``x if c else y``) does to their values: the one definition of the operators, applied by the
    evaluator's functions below and to whole tables by tabulate.py. A look-up takes the rule set's
    tables first; the comparisons and arithmetic need numbers (strings only compare with == and !=)."""
    if isinstance(node, expr.Lookup):
        return functools.partial(lookup, node.table)
    if isinstance(node, expr.Unary):
        return operator.not_ if node.op == "not" else operator.neg
    if isinstance(node, expr.Binary):
        return ARITHMETIC[node.op] if node.op in ("==", "!=") else _numeric(node.op)
    return FUNCTIONS[node.function]


def lookup(table: str, tables: dict, key):
    entries = tables[table]
    if table_key(key) not in entries:
        raise KeyError(f"{table} has no entry for {key!r}")
    return entries[table_key(key)]


def _numeric(op: str) -> Callable:
    apply = ARITHMETIC[op]

    def numeric(left, right):
        if isinstance(left, str) or isinstance(right, str):
            raise TypeError(f"{op} needs numbers, not {left!r} and {right!r}")
        return apply(left, right)
    return numeric


def decided(op: str, left) -> bool:
    """Whether the left side of ``and``/``or`` decides it (the right side is then not read)."""
    return bool(left) == (op == "or")


Function = Callable[["Evaluator", dict, dict], object]


def function(node: expr.Node) -> Function:
    """``node`` as a Python function of (evaluator, config, memo) applying operation() and decided():
    the tree is walked once here instead of on every evaluation. Names and tables are read through the
    evaluator at call time, so one function serves every evaluator of a rule set (calibrate varies the
    constants)."""
    if isinstance(node, expr.Const):
        constant = node.value
        return lambda evaluator, config, memo: constant
    if isinstance(node, expr.Name):
        name = node.name
        return lambda evaluator, config, memo: evaluator.name(name, config, memo)
    if isinstance(node, expr.IfElse):
        condition, then, otherwise = function(node.condition), function(node.then), function(node.otherwise)
        return lambda evaluator, config, memo: (then if condition(evaluator, config, memo)
                                                else otherwise)(evaluator, config, memo)
    if isinstance(node, expr.Binary) and node.op in ("and", "or"):
        return _logical(node.op, function(node.left), function(node.right))
    apply, operands = operation(node), tuple(function(child) for child in expr.children(node))
    if isinstance(node, expr.Lookup):
        (key,) = operands
        return lambda evaluator, config, memo: apply(evaluator.tables, key(evaluator, config, memo))
    if len(operands) == 1:
        (operand,) = operands
        return lambda evaluator, config, memo: apply(operand(evaluator, config, memo))
    if len(operands) == 2:
        left, right = operands
        return lambda evaluator, config, memo: apply(left(evaluator, config, memo), right(evaluator, config, memo))
    return lambda evaluator, config, memo: apply(*(each(evaluator, config, memo) for each in operands))


def _logical(op: str, left: Function, right: Function) -> Function:
    def logical(evaluator, config, memo):
        first = bool(left(evaluator, config, memo))
        return first if decided(op, first) else bool(right(evaluator, config, memo))
    return logical


@dataclass
class Violation:
    rule: str
    message: str
    severity: str


@dataclass
class Assessment:
    """All derived values of one config and the constraints it breaks."""

    config: dict
    values: dict
    violations: list[Violation] = field(default_factory=list)

    @property
    def passes(self) -> bool:
        return not any(violation.severity == "error" for violation in self.violations)


class Evaluator:
    def __init__(self, rules: RuleSet, constants: dict, tables: dict):
        self.rules, self.constants, self.tables = rules, constants, tables

    def constant(self, node: expr.Node):
        """Value of an expression that reads no knob (goal inputs, params)."""
        return self.value(node, {}, {})

    def value(self, node: expr.Node, config: dict, memo: dict):
        """Value of ``node`` under ``config`` (knob -> value); ``memo`` caches derived quantities."""
        return function(node)(self, config, memo)

    def name(self, name: str, config: dict, memo: dict):
        if name in config:
            return config[name]
        if name in self.rules.derived:
            if name in memo:
                return memo[name]
            try:
                memo[name] = self._function(name, self.rules.derived[name])(self, config, memo)
            except (ArithmeticError, TypeError, ValueError, KeyError) as error:
                file, where = self.rules.origin[name]
                raise InputError(file, where, f"an expression that evaluates for {_show(config)}; "
                                              f"{name} failed with {error.__class__.__name__}: {error}") from None
            return memo[name]
        if name in self.constants:
            return self.constants[name]
        raise KeyError(f"{name} is not set")

    def assess(self, config: dict, known: dict | None = None) -> Assessment:
        """Evaluate every derived quantity and constraint on one complete config (``known``: derived
        values already computed for it)."""
        memo: dict = dict(known or {})
        values = {name: self.name(name, config, memo) for name in self.rules.order}
        assessment = Assessment(dict(config), values)
        for constraint in self.rules.constraints:
            if not self.holds(constraint, config, memo):
                assessment.violations.append(Violation(constraint.id, self.message(constraint, config, memo),
                                                       constraint.severity))
        return assessment

    def holds(self, constraint: Constraint, config: dict, memo: dict) -> bool:
        try:
            return bool(self._function(constraint.id, constraint.condition)(self, config, memo))
        except (ArithmeticError, TypeError, ValueError, KeyError) as error:
            raise InputError(constraint.file, constraint.where,
                             f"a condition that evaluates for {_show(config)}; got {error.__class__.__name__}: {error}")

    def _function(self, key: str, node: expr.Node) -> Function:
        """The function of a derived quantity, a rule's condition or a message's placeholder, built once
        per rule set (and shared by its folded and substituted copies: the node is kept with it, so its
        id stays its own)."""
        entry = self.rules._functions_memo.get((key, id(node)))
        if entry is None:
            entry = self.rules._functions_memo[(key, id(node))] = (function(node), node)
        return entry[0]

    def message(self, constraint: Constraint, config: dict, memo: dict) -> str:
        text = constraint.message
        for placeholder, node, spec in self.rules.message_names(constraint):
            formatted = format_value(self._function(placeholder, node)(self, config, memo), spec)
            text = text.replace("{" + placeholder + (f":{spec}" if spec else "") + "}", formatted)
        return text


def format_value(value, spec: str | None = None) -> str:
    """Human form of a number: bytes as GiB/MiB, seconds as s/min/h/days, fractions as %."""
    if isinstance(value, (str, bool)):
        return str(value).lower() if isinstance(value, bool) else value
    if not math.isfinite(value):
        return "undefined" if math.isnan(value) else f"{'-' if value < 0 else ''}infinite"
    if spec == "bytes":
        return f"{value / 2**30:.1f} GiB" if abs(value) >= 2**30 else f"{value / 2**20:.1f} MiB"
    if spec == "time":
        for unit, size in (("days", 86400), ("h", 3600), ("min", 60)):
            if abs(value) >= 2 * size or unit == "min" and abs(value) >= size:
                return f"{value / size:.1f} {unit}"
        return f"{value:.1f} s"
    if spec == "pct":
        return f"{100 * value:.1f}%"
    if spec == "int":
        return f"{round(value):,}"
    return str(value) if isinstance(value, int) else f"{value:.4g}"   # a knob's integer as it is (context 32768)


def _show(config: dict) -> str:
    return ", ".join(f"{key}={value}" for key, value in config.items()) or "the goal inputs"
