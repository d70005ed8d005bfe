"""The rule expression language: parse text into a whitelisted tree.

Expressions look like Python arithmetic (``a * b / 2``, ``x if c else y``,
``min(a, b)``, ``bytes_per_param[precision]``, ``model.hidden``) but are never
handed to ``eval``: Python's parser only splits the text, and every node is
translated into one of the small dataclasses below or rejected with a message.
Both backends -- the plain evaluator and the CP-SAT compiler -- walk these trees.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

from .errors import InputError

ARITHMETIC = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Mod: "%", ast.Pow: "**"}
COMPARISONS = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!="}
MAX_CHARACTERS = 4000   # the longest shipped expression is ~600 characters
FUNCTIONS = {"min": (2, None), "max": (2, None), "abs": (1, 1), "ceil": (1, 1), "floor": (1, 1),
             "log2": (1, 1), "sqrt": (1, 1)}


@dataclass(frozen=True)
class Const:
    value: float | str | bool


@dataclass(frozen=True)
class Name:
    name: str


@dataclass(frozen=True)
class Lookup:
    table: str
    key: "Node"


@dataclass(frozen=True)
class Unary:
    op: str  # "-" or "not"
    operand: "Node"


@dataclass(frozen=True)
class Binary:
    op: str  # arithmetic, comparison, "and" or "or"
    left: "Node"
    right: "Node"


@dataclass(frozen=True)
class IfElse:
    condition: "Node"
    then: "Node"
    otherwise: "Node"


@dataclass(frozen=True)
class Call:
    function: str
    args: tuple["Node", ...]


Node = Const | Name | Lookup | Unary | Binary | IfElse | Call


def parse(text: str | int | float | bool, file: str, where: str) -> Node:
    """Parse one expression; syntax or vocabulary errors name ``file`` and ``where``."""
    if isinstance(text, (bool, int, float)):
        return Const(text)
    text = str(text)
    if len(text) > MAX_CHARACTERS:
        raise InputError(file, where, f"an expression of at most {MAX_CHARACTERS} characters, not {len(text):,}")
    if not text.isascii():  # Python would fold look-alikes (mathematical bold m) into plain names
        odd = next(char for char in text if not char.isascii())
        raise InputError(file, where, f"an expression in ASCII; {odd!r} (U+{ord(odd):04X}) is not")
    try:
        tree = ast.parse(f"({text.strip()}\n)", mode="eval")  # parentheses let it span lines
        return _translate(tree.body, file, where, text)
    except SyntaxError as error:
        raise InputError(file, where, f"a valid expression; {error.msg} in {' '.join(text.split())[:200]!r}") from None
    except (RecursionError, MemoryError):
        raise InputError(file, where, "an expression nested less deeply (split it into derived quantities)") from None


def _translate(node: ast.AST, file: str, where: str, text: str) -> Node:
    def walk(child: ast.AST) -> Node:
        return _translate(child, file, where, text)

    def reject(what: str) -> InputError:
        return InputError(file, where, f"{what} in {' '.join(text.split())[:200]!r}")

    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str, bool)):
        if isinstance(node.value, (int, float)) and not isinstance(node.value, bool) and not abs(node.value) <= 1e30:
            raise reject(f"numbers of magnitude at most 1e30 (not {str(node.value)[:20]})")
        return Const(node.value)
    if isinstance(node, ast.Name) and node.id in ("true", "false"):
        return Const(node.id == "true")  # YAML spelling of the Booleans
    if isinstance(node, (ast.Name, ast.Attribute)):
        return Name(_dotted(node, reject))
    if isinstance(node, ast.Subscript):
        return Lookup(_dotted(node.value, reject), walk(node.slice))
    if isinstance(node, ast.UnaryOp):
        if isinstance(node.op, ast.USub):
            return Unary("-", walk(node.operand))
        if isinstance(node.op, ast.UAdd):
            return walk(node.operand)
        if isinstance(node.op, ast.Not):
            return Unary("not", walk(node.operand))
    if isinstance(node, ast.BinOp) and type(node.op) in ARITHMETIC:
        return Binary(ARITHMETIC[type(node.op)], walk(node.left), walk(node.right))
    if isinstance(node, ast.BoolOp):
        op = "and" if isinstance(node.op, ast.And) else "or"
        result = walk(node.values[0])
        for value in node.values[1:]:
            result = Binary(op, result, walk(value))
        return result
    if isinstance(node, ast.Compare):
        operands = [node.left, *node.comparators]
        parts = []
        for op, left, right in zip(node.ops, operands, operands[1:]):
            if type(op) not in COMPARISONS:
                raise reject(f"a comparison <, <=, >, >=, == or != (not {type(op).__name__})")
            parts.append(Binary(COMPARISONS[type(op)], walk(left), walk(right)))
        result = parts[0]
        for part in parts[1:]:
            result = Binary("and", result, part)
        return result
    if isinstance(node, ast.IfExp):
        return IfElse(walk(node.test), walk(node.body), walk(node.orelse))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
        name = node.func.id
        if name not in FUNCTIONS:
            raise reject(f"a function among {', '.join(sorted(FUNCTIONS))} (not {name!r})")
        least, most = FUNCTIONS[name]
        if len(node.args) < least or (most is not None and len(node.args) > most):
            raise reject(f"{name}() with {least}{'' if most == least else '+'} argument(s)")
        return Call(name, tuple(walk(arg) for arg in node.args))
    raise reject(f"only numbers, names, arithmetic, comparisons, and/or/not, 'x if c else y', "
                 f"table[key] and {', '.join(sorted(FUNCTIONS))}; found {type(node).__name__}")


def _dotted(node: ast.AST, reject) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value, reject)}.{node.attr}"
    raise reject("a name or dotted name such as model.hidden")


def names(node: Node) -> set[str]:
    """Every name the expression reads, tables included."""
    if isinstance(node, Name):
        return {node.name}
    if isinstance(node, Lookup):
        return {node.table} | names(node.key)
    return set().union(*(names(child) for child in children(node)))


def children(node: Node) -> tuple[Node, ...]:
    if isinstance(node, Lookup):
        return (node.key,)
    if isinstance(node, Unary):
        return (node.operand,)
    if isinstance(node, Binary):
        return (node.left, node.right)
    if isinstance(node, IfElse):
        return (node.condition, node.then, node.otherwise)
    if isinstance(node, Call):
        return node.args
    return ()


def rebuilt(node: Node, parts: list[Node]) -> Node:
    """``node`` with ``parts`` as its children (``node`` itself when none changed)."""
    if all(new is old for new, old in zip(parts, children(node))):
        return node
    if isinstance(node, Lookup):
        return Lookup(node.table, *parts)
    if isinstance(node, Unary):
        return Unary(node.op, *parts)
    if isinstance(node, Binary):
        return Binary(node.op, *parts)
    if isinstance(node, IfElse):
        return IfElse(*parts)
    return Call(node.function, tuple(parts))


def factors_of(node: Node, power: int = 1) -> list[tuple[Node, int]]:
    """The factors of a product/quotient chain (not looking through derived names), powers +-1:
    the inverse of ``product``."""
    if isinstance(node, Binary) and node.op in ("*", "/"):
        return factors_of(node.left, power) + factors_of(node.right, power if node.op == "*" else -power)
    return [(node, power)]


def product(factors: list[tuple[Node, int]]) -> Node:
    """The product of ``factors`` (node, power +-1), left to right (from 1 when the first divides)."""
    (first, power), rest = factors[0], factors[1:]
    result = first if power > 0 else Binary("/", Const(1), first)
    for factor, power in rest:
        result = Binary("*" if power > 0 else "/", result, factor)
    return result


def render(node: Node) -> str:
    """Readable text of a tree, for messages."""
    if isinstance(node, Const):
        return repr(node.value)
    if isinstance(node, Name):
        return node.name
    if isinstance(node, Lookup):
        return f"{node.table}[{render(node.key)}]"
    if isinstance(node, Unary):
        return f"{node.op}{' ' if node.op == 'not' else ''}{render(node.operand)}"
    if isinstance(node, Binary):
        return f"({render(node.left)} {node.op} {render(node.right)})"
    if isinstance(node, IfElse):
        return f"({render(node.then)} if {render(node.condition)} else {render(node.otherwise)})"
    return f"{node.function}({', '.join(render(arg) for arg in node.args)})"
