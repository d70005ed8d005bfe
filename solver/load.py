"""Read YAML and JSON files safely, remembering the line of every key for error messages.

Everything tplan reads passes through here, so the limits that keep hostile files harmless
live here too: regular files only (no folders, pipes or devices), a size cap, no duplicate
keys, no tags beyond YAML's plain types, bounded nesting and alias expansion, and finite
numbers of a sane size. Each breach is an InputError naming the file and the line.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .errors import InputError

MAX_FILE_BYTES = 1 << 20    # 1 MiB: the largest goal, pack or config.json we meet is ~50 kB
MAX_NODES = 100_000         # values after aliases are expanded (a "billion laughs" stops here)
MAX_DEPTH = 32              # nesting of mappings and lists
MAX_INTEGER = 2**53         # integers beyond this lose precision as floats; no count needs more


class Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # libyaml's parser when PyYAML has it
    """PyYAML's safe loader, reading 2e9 and 1.0e9 as numbers (YAML 1.2) instead of strings,
    refusing duplicate keys, and reporting bad !!int / !!float values at their line."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, (list, dict)):
                raise yaml.constructor.ConstructorError(None, None, "a mapping key that is a plain value",
                                                        key_node.start_mark)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"each key once; {key!r} is a duplicate (first on line {seen[key]})",
                    key_node.start_mark)
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)

    def construct_number(self, node):
        try:
            return (self.construct_yaml_int if node.tag.endswith(":int") else self.construct_yaml_float)(node)
        except ValueError:
            raise yaml.constructor.ConstructorError(None, None, f"a number after {node.tag.split(':')[-1]}, "
                                                    f"not {node.value!r}", node.start_mark) from None


Loader.add_constructor("tag:yaml.org,2002:int", Loader.construct_number)
Loader.add_constructor("tag:yaml.org,2002:float", Loader.construct_number)
Loader.add_constructor("tag:yaml.org,2002:map", Loader.construct_mapping)
Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                |\.[0-9_]+(?:[eE][-+][0-9]+)?
                |[-+]?\.(?:inf|Inf|INF)
                |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))


@dataclass
class Document:
    """Parsed data of one file plus the line where each key path starts."""

    path: str
    data: object
    lines: dict[tuple, int] = field(default_factory=dict)

    def where(self, key_path) -> str:
        """'key a.b[2] (line 7)' for a key path; the nearest known ancestor gives the line."""
        key_path = tuple(key_path)
        text = _format_path(key_path) or "top level"
        for cut in range(len(key_path), -1, -1):
            if key_path[:cut] in self.lines:
                return f"{text} (line {self.lines[key_path[:cut]]})"
        return text


def _format_path(key_path: tuple) -> str:
    text = ""
    for key in key_path:
        key = key if isinstance(key, int) or len(str(key)) <= 60 else f"{str(key)[:60]}..."
        text += f"[{key}]" if isinstance(key, int) else (f".{key}" if text else str(key))
    return text


STDIN = "-"  # a goal or config read from standard input (YAML or JSON), named <stdin> in messages


def read(path: str | Path) -> Document:
    """Load a YAML, JSON or TOML file (``-``: standard input); unreadable files, syntax errors and breached
    limits become InputError."""
    if str(path) == STDIN:
        return parse_yaml(_read_stdin(), "<stdin>")  # JSON is YAML
    path = Path(path)
    text = read_text(path)
    if path.suffix == ".json":
        try:
            data = json.loads(text, parse_constant=_refuse_constant)
        except json.JSONDecodeError as error:
            raise InputError(str(path), f"line {error.lineno}, column {error.colno}",
                             f"valid JSON ({error.msg})") from None
        except (ValueError, RecursionError) as error:
            raise InputError(str(path), "", f"valid JSON ({error})") from None
        document = Document(str(path), data)
        _check_values(document, data, ())
        return document
    if path.suffix == ".toml":
        return _parse_toml(text, str(path))
    return parse_yaml(text, str(path))


def _parse_toml(text: str, name: str) -> Document:
    """A TOML file (torchtitan's job configs); TOML's own grammar bounds what it can hold."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise InputError(name, "", f"valid TOML ({error})") from None
    document = Document(name, data)
    _check_values(document, data, ())
    return document


def from_data(data: dict, name: str) -> Document:
    """A document built in Python (the API's dict goals), held to the same limits as a file."""
    document = Document(name, data)
    _check_values(document, data, ())
    return document


def read_text(path: Path) -> str:
    """The text of a regular UTF-8 file no larger than MAX_FILE_BYTES (never a pipe or a device)."""
    try:
        with open(path, "rb", opener=lambda name, flags: os.open(name, flags | os.O_NONBLOCK)) as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise InputError(str(path), "", "a regular file, not a folder, pipe or device")
            if info.st_size > MAX_FILE_BYTES:
                raise InputError(str(path), "", f"a file of at most {MAX_FILE_BYTES >> 10} KiB, not "
                                                f"{info.st_size / 2**20:.1f} MiB")
            raw = handle.read(MAX_FILE_BYTES + 1)
    except IsADirectoryError:
        raise InputError(str(path), "", "a regular file, not a folder") from None
    except OSError as error:
        raise InputError(str(path), "", f"a readable file ({error.strerror or error})") from None
    try:
        return raw[:MAX_FILE_BYTES].decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise InputError(str(path), f"byte {error.start}", "UTF-8 text") from None


def _read_stdin() -> str:
    text = sys.stdin.buffer.read(MAX_FILE_BYTES + 1)
    if len(text) > MAX_FILE_BYTES:
        raise InputError("<stdin>", "", f"at most {MAX_FILE_BYTES >> 10} KiB")
    try:
        return text.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise InputError("<stdin>", f"byte {error.start}", "UTF-8 text") from None


def _refuse_constant(name: str):
    raise ValueError(f"a finite number, not {name}")


def parse_yaml(text: str, name: str) -> Document:
    loader = Loader(text)  # a SafeLoader: plain data only, never arbitrary objects
    lines: dict[tuple, int] = {}
    try:
        node = loader.get_single_node()  # parsed once: the node tree gives the lines, then the data
        if node is not None:
            _collect_lines(node, (), lines, [0], name)
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise InputError(name, where, f"valid YAML ({getattr(error, 'problem', None) or error})") from None
    except RecursionError:
        raise InputError(name, "", f"YAML nested at most {MAX_DEPTH} levels deep") from None
    finally:
        loader.dispose()
    document = Document(name, data, lines)
    _check_values(document, data, ())
    return document


def _collect_lines(node: yaml.Node, key_path: tuple, lines: dict, count: list, name: str) -> None:
    """Record the line of every key path, counting nodes as aliases expand them."""
    count[0] += 1
    if count[0] > MAX_NODES:
        raise InputError(name, f"line {node.start_mark.line + 1}",
                         f"at most {MAX_NODES:,} values once aliases are expanded")
    if len(key_path) > MAX_DEPTH:
        raise InputError(name, f"line {node.start_mark.line + 1}", f"YAML nested at most {MAX_DEPTH} levels deep")
    lines.setdefault(key_path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            child = key_path + (key_node.value,)
            lines[child] = key_node.start_mark.line + 1
            _collect_lines(value_node, child, lines, count, name)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _collect_lines(item, key_path + (index,), lines, count, name)


def _check_values(document: Document, value, key_path: tuple) -> None:
    """Keys are strings; numbers are finite and representable; nesting is bounded."""
    if len(key_path) > MAX_DEPTH:
        raise InputError(document.path, document.where(key_path), f"nesting at most {MAX_DEPTH} levels deep")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InputError(document.path, document.where(key_path + (key,)),
                                 f"keys that are names, not {type(key).__name__} {key!r}")
            _check_values(document, item, key_path + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_values(document, item, key_path + (index,))
    elif isinstance(value, float) and not math.isfinite(value):
        raise InputError(document.path, document.where(key_path), f"a finite number, not {value}")
    elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INTEGER:
        raise InputError(document.path, document.where(key_path),
                         f"a number of magnitude at most 2^53, not one of {len(str(abs(value)))} digits")
    elif isinstance(value, float) and abs(value) > 1e30:
        raise InputError(document.path, document.where(key_path), f"a number of magnitude at most 1e30, not {value:g}")
