"""Rule packs: merge validated pack files into one RuleSet and check its dependency graph.

A pack declares knobs (search variables), params (named constants with sources),
tables (look-ups keyed by a knob), derived quantities (named expressions),
constraints and objectives. Later packs may override params and tables of earlier
ones (that is how a team retunes a constant); any other redefinition is an error.
Derived quantities form a graph (the standard library's graphlib): unknown names and
cycles are reported with the pack, the rule and the cycle.
"""

from __future__ import annotations

import functools
import graphlib
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from . import expr
from .errors import InputError, nearest, quote
from .load import Document, read, read_text
from .validate import validate

SHIPPED_PACKS = ("knobs.yaml", "batch.yaml", "memory.yaml", "time.yaml", "parallelism.yaml", "synthetic.yaml")
PLACEHOLDER = re.compile(r"\{([^{}:]+)(?::([^{}]+))?\}")
MESSAGE_FORMATS = ("bytes", "time", "pct", "int", "g")  # {name:format} in a message (evaluate.format_value)


@dataclass(frozen=True)
class Knob:
    name: str
    values: tuple | str    # every value the knob may take, or "integer"
    default: tuple         # the search domain when a goal says nothing
    at_most: expr.Node | None
    assumed: object        # value a config takes when it leaves the knob out
    divides: expr.Node | None = None  # default domain: every divisor of this expression's value
    minimum: int = 0                  # bounds of an integer knob
    maximum: int = 2**30
    repairs: tuple = ()               # values beyond the default a repair may propose (rulepack schema)
    default_where: tuple = ()         # (value, condition): the value joins the default domain only where it holds

    def input_expressions(self) -> list[tuple[str, expr.Node]]:
        """The expressions over goal inputs that shape the default domain, each with its key."""
        capped = [("at_most", self.at_most)] if self.at_most is not None else []
        return capped + [(f"default_where.{value}", condition) for value, condition in self.default_where]


@dataclass(frozen=True)
class Constraint:
    id: str                # "pack/rule-id"
    condition: expr.Node
    message: str
    severity: str          # "error" | "warning"
    file: str
    where: str
    nearest: str | None = None   # derived quantity to minimise for the plan nearest to meeting the rule
    relaxable: bool = True       # False: the rule defines which configurations exist; never a conflict's cause


@dataclass
class RuleSet:
    knobs: dict[str, Knob] = field(default_factory=dict)
    params: dict[str, float | str] = field(default_factory=dict)
    tables: dict[str, dict] = field(default_factory=dict)
    derived: dict[str, expr.Node] = field(default_factory=dict)
    constraints: list[Constraint] = field(default_factory=list)
    objectives: dict[str, str] = field(default_factory=dict)
    origin: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (file, place)
    order: list[str] = field(default_factory=list)         # derived names, dependencies first
    _knobs_memo: dict = field(default_factory=dict, repr=False)
    _tables_memo: dict = field(default_factory=dict, repr=False)   # tabulate.py's tables, shared by a goal's variants
    _trees_memo: dict = field(default_factory=dict, repr=False)    # substitute.py's rebuilt trees and tables, likewise
    _functions_memo: dict = field(default_factory=dict, repr=False)  # evaluate.py's functions of derived names and rules
    _rejected_memo: dict = field(default_factory=dict, repr=False)  # search.py's plans the evaluator rejected, a goal's variants'

    def knobs_read(self, node: expr.Node) -> frozenset[str]:
        """Knobs an expression reads, directly or through derived quantities."""
        found = set()
        for name in expr.names(node):
            if name in self.knobs:
                found.add(name)
            elif name in self.derived:
                if name not in self._knobs_memo:
                    self._knobs_memo[name] = self.knobs_read(self.derived[name])
                found |= self._knobs_memo[name]
        return frozenset(found)

    def message_names(self, constraint: Constraint) -> tuple[tuple[str, expr.Node, str | None], ...]:
        return _placeholders(constraint.message, constraint.file, constraint.where)


@functools.cache
def _placeholders(message: str, file: str, where: str) -> tuple[tuple[str, expr.Node, str | None], ...]:
    """Each ``{expression:spec}`` of a rule's message, parsed once."""
    return tuple((text, expr.parse(text, file, where), spec) for text, spec in PLACEHOLDER.findall(message))


def table_key(value) -> str:
    """Canonical key of a table entry: YAML's 2, 2.0, '2' and True/'true' compare equal."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def shipped_pack_paths() -> list[Path]:
    folder = resources.files("tplan.rules")
    return [Path(str(folder / name)) for name in SHIPPED_PACKS]


RULE_SETS_KEPT = 4  # merged rule sets kept for goals that read the same packs (an infeasible goal's repairs)
_RULE_SETS: dict[tuple, RuleSet] = {}


def load_rules(extra: list[str | Path] = (), context_names: set[str] = frozenset()) -> RuleSet:
    """Shipped packs then ``extra`` packs, merged and checked against ``context_names``
    (the names a goal provides: model.*, gpu.*, data.* ...). A goal that reads the same pack files
    (the same text) with the same names gets the same RuleSet, read once: nothing changes a RuleSet
    after loading (fold, substitute and with_rules make new ones)."""
    paths = [*shipped_pack_paths(), *extra]
    key = (tuple((str(path), read_text(Path(path))) for path in paths), frozenset(context_names))
    if key not in _RULE_SETS:
        rules = RuleSet()
        for path in paths:
            document = read(path)
            validate(document, "rulepack")
            _merge(rules, document)
        _check_graph(rules, context_names)
        while len(_RULE_SETS) >= RULE_SETS_KEPT:
            _RULE_SETS.pop(next(iter(_RULE_SETS)))
        _RULE_SETS[key] = rules
    return _RULE_SETS[key]


def _merge(rules: RuleSet, doc: Document) -> None:
    pack = doc.data.get("pack") or Path(doc.path).stem
    data = doc.data

    def claim(name: str, kind: str, key_path: tuple, overridable: dict | None = None) -> None:
        """Record where ``name`` is defined; only params, tables and knobs may be redefined."""
        previous = rules.origin.get(name)
        if previous and (overridable is None or name not in overridable):
            raise InputError(doc.path, doc.where(key_path),
                             f"a new name, but {kind} {name!r} is already defined in {previous[0]} at {previous[1]}")
        rules.origin[name] = (doc.path, doc.where(key_path))

    for name, spec in (data.get("knobs") or {}).items():
        claim(name, "knob", ("knobs", name), rules.knobs)
        rules.knobs[name] = _knob(doc, name, spec, rules.knobs.get(name))
    for name, spec in (data.get("params") or {}).items():
        claim(name, "param", ("params", name), rules.params)
        if name in rules.params and _kind(spec["value"]) != _kind(rules.params[name]):
            raise InputError(doc.path, doc.where(("params", name, "value")),
                             f"a {_kind(rules.params[name])} like the {name} it overrides "
                             f"({rules.params[name]!r}), not {quote(spec['value'])}")
        rules.params[name] = spec["value"]
    for name, spec in (data.get("tables") or {}).items():
        claim(name, "table", ("tables", name), rules.tables)
        rules.tables[name] = {table_key(key): value for key, value in spec["values"].items()}
        _check_table_keys(rules, doc, name, spec)
    for name, spec in (data.get("derived") or {}).items():
        claim(name, "derived quantity", ("derived", name))
        text = spec["expr"] if isinstance(spec, dict) else spec
        rules.derived[name] = expr.parse(text, doc.path, doc.where(("derived", name)))
    for index, spec in enumerate(data.get("constraints") or []):
        rule_id = f"{pack}/{spec['id']}"
        claim(rule_id, "constraint", ("constraints", index))
        where = doc.where(("constraints", index, "expr"))
        constraint = Constraint(rule_id, expr.parse(spec["expr"], doc.path, where), spec["message"],
                                spec.get("severity", "error"), doc.path, where, spec.get("nearest"),
                                spec.get("relaxable", True))
        for _, style in PLACEHOLDER.findall(spec["message"]):
            if style and style not in MESSAGE_FORMATS:
                raise InputError(doc.path, doc.where(("constraints", index, "message")),
                                 f"a message format among {', '.join(MESSAGE_FORMATS)}, not {quote(style)}")
        rules.message_names(constraint)  # parse placeholders now so a typo is a load error
        rules.constraints.append(constraint)
    for objective, name in (data.get("objectives") or {}).items():
        rules.objectives[objective] = name
        rules.origin[f"objectives.{objective}"] = (doc.path, doc.where(("objectives", objective)))


def _knob_kind(values) -> str:
    """'integers' (values: integer, or a list of them) or the kinds a list of values holds."""
    if values == "integer" or all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return "integers"
    return "/".join(sorted({_kind(value) for value in values}))


def _kind(value) -> str:
    return "Boolean" if isinstance(value, bool) else "number" if isinstance(value, (int, float)) else "string"


def _knob(doc: Document, name: str, spec: dict, previous: Knob | None) -> Knob:
    """A knob as a pack declares it; a redefinition keeps the kind and the bounds of the knob it
    replaces (a team pack narrows a domain, it does not turn micro-batches into words or zero)."""
    values = spec["values"] if isinstance(spec["values"], str) else tuple(spec["values"])
    if previous and _knob_kind(values) != _knob_kind(previous.values):
        raise InputError(doc.path, doc.where(("knobs", name, "values")),
                         f"values of the kind of the knob {name!r} it redefines "
                         f"({_knob_kind(previous.values)}), not {quote(spec['values'])}")
    low, high = (previous.minimum, previous.maximum) if previous else (0, 2**30)
    low, high = spec.get("minimum", low), spec.get("maximum", high)
    if values != "integer" and _knob_kind(values) == "integers" and not all(low <= v <= high for v in values):
        raise InputError(doc.path, doc.where(("knobs", name, "values")),
                         f"values of {name} from {low} to {high:,}, not {quote(spec['values'])}")
    default = tuple(spec.get("default", values))

    def expression(key: str):
        return expr.parse(spec[key], doc.path, doc.where(("knobs", name, key))) if spec.get(key) is not None else None

    repairs = tuple(spec.get("repairs", ()))
    if any(value not in values for value in repairs) and values != "integer":
        raise InputError(doc.path, doc.where(("knobs", name, "repairs")),
                         f"repair values among the values of {name}, not {quote(spec['repairs'])}")
    where = spec.get("default_where", {})
    if any(value not in default for value in where):
        raise InputError(doc.path, doc.where(("knobs", name, "default_where")),
                         f"conditions on values of {name}'s default domain, not {quote(list(where))}")
    conditions = tuple((value, expr.parse(text, doc.path, doc.where(("knobs", name, "default_where", value))))
                       for value, text in where.items())
    return Knob(name, values, default, expression("at_most"), spec.get("assumed", default[0]),
                expression("divides"), low, high, repairs, conditions)


def _check_table_keys(rules: RuleSet, doc: Document, name: str, spec: dict) -> None:
    knob = rules.knobs.get(spec.get("key", ""))
    if knob is None:
        return
    missing = [value for value in knob.values if table_key(value) not in rules.tables[name]]
    if missing:
        raise InputError(doc.path, doc.where(("tables", name, "values")),
                         f"an entry for every value of knob {knob.name!r}; missing {missing}")


def _check_graph(rules: RuleSet, context_names: set[str]) -> None:
    known = set(rules.knobs) | set(rules.params) | set(rules.tables) | set(rules.derived) | set(context_names)
    graph: dict[str, set[str]] = {name: set() for name in rules.derived}  # name -> what it reads

    def require(node: expr.Node, owner: str) -> set[str]:
        used = expr.names(node)
        unknown = sorted(used - known)
        if unknown:
            raise InputError(*rules.origin[owner],
                             f"known names; {', '.join(map(repr, unknown))} is not a knob, param, table, "
                             f"derived quantity or goal input{nearest(unknown[0], known)}")
        return used

    for name, node in rules.derived.items():
        graph[name] = require(node, name) & set(rules.derived)
    for name, knob in rules.knobs.items():
        for key, node in knob.input_expressions():
            require(node, name)
            knobs = rules.knobs_read(node)
            if knobs:
                path, where = rules.origin[name]
                raise InputError(path, f"{where}, {key}", f"an expression over goal inputs and params (the "
                                 f"domain is set before any knob has a value), not one that reads "
                                 f"{', '.join(sorted(knobs))}")
    for constraint in rules.constraints:
        require(constraint.condition, constraint.id)
        for _, node, _ in rules.message_names(constraint):
            require(node, constraint.id)
    for constraint in rules.constraints:
        if constraint.nearest is not None and constraint.nearest not in rules.derived:
            raise InputError(constraint.file, constraint.where.replace("expr", "nearest"),
                             f"a derived quantity for nearest, not {quote(constraint.nearest)}"
                             f"{nearest(constraint.nearest, rules.derived)}")
    for objective, name in rules.objectives.items():
        if name not in rules.derived:
            raise InputError(*rules.origin[f"objectives.{objective}"],
                             f"a derived quantity, not {quote(name)}{nearest(name, rules.derived)}")
    try:
        rules.order = list(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as error:
        cycle = error.args[1][::-1]  # graphlib lists it against the edges: reader before what it reads
        raise InputError(*rules.origin[cycle[0]],
                         f"derived quantities without a cycle; found {' -> '.join(cycle)}") from None
