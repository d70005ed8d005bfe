"""Typed reads of an engine's config file: each value checked, each error naming the file and key.

Values an engine leaves to another ("auto" in a DeepSpeed JSON that the Hugging Face Trainer fills
in) are looked up in ``resolved`` (what the files beside it, or the goal, say), else refused; a
file read without ``resolved`` keeps "auto" as a value of its own (axolotl's `bf16: auto`).
"""

from __future__ import annotations

from ..errors import InputError, quote
from ..load import Document

INTEGER_LIMIT = 2**24


class Fields:
    """One config file's values by key path (a tuple of keys), checked as they are read."""

    def __init__(self, document: Document, resolved: dict | None = None):
        self.document, self.resolved = document, resolved
        if not isinstance(document.data, dict):
            raise InputError(document.path, "top level", "a mapping of settings")

    def error(self, key_path: tuple, expected: str) -> InputError:
        return InputError(self.document.path, self.document.where(key_path), expected)

    def section(self, key_path: tuple) -> dict:
        """The mapping at ``key_path`` ({} when absent)."""
        value = self.document.data
        for depth, key in enumerate(key_path):
            value = value.get(key) if isinstance(value, dict) else None
            if value is None:
                return {}
            if not isinstance(value, dict):
                raise self.error(key_path[:depth + 1], f"a mapping, not {quote(value)}")
        return value

    def has(self, key_path: tuple) -> bool:
        return self.section(key_path[:-1]).get(key_path[-1]) is not None

    def raw(self, key_path: tuple, default=None):
        value = self.section(key_path[:-1]).get(key_path[-1])
        if value == "auto" and self.resolved is not None:
            value = self.resolved.get(key_path)
            if value is None:
                raise self.error(key_path, "a value, not \"auto\" (the Trainer fills it in from its arguments: no "
                                           "arguments beside this file name it, and the goal gives no one value)")
        return default if value is None else value

    def integer(self, key_path: tuple, default=None, minimum: int = 1, maximum: int = INTEGER_LIMIT):
        value = self.raw(key_path)
        if value is None:
            return default
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
            raise self.error(key_path, f"an integer from {minimum} to {maximum:,}, not {quote(value)}")
        return value

    def flag(self, key_path: tuple, default: bool = False) -> bool:
        return self._typed(key_path, default, lambda value: isinstance(value, bool), "true or false")

    def text(self, key_path: tuple, default=None):
        return self._typed(key_path, default, lambda value: isinstance(value, str), "a string")

    def names(self, key_path: tuple) -> list[str]:
        """A list of strings ([] when absent)."""
        return self._typed(key_path, [], lambda value: isinstance(value, list) and
                           all(isinstance(item, str) for item in value), "a list of names")

    def _typed(self, key_path: tuple, default, accepts, expected: str):
        value = self.raw(key_path)
        if value is None:
            return default
        if not accepts(value):
            raise self.error(key_path, f"{expected}, not {quote(value)}")
        return value

    def choice(self, key_path: tuple, meanings: dict, default=None):
        """The tplan value that ``meanings`` gives for the file's value (compared case-insensitively)."""
        value = self.raw(key_path)
        if value is None:
            return default
        by_name = {str(name).lower(): meaning for name, meaning in meanings.items()}
        if str(value).lower() not in by_name:
            raise self.error(key_path, f"one of {', '.join(map(str, meanings))}, not {quote(value)}")
        return by_name[str(value).lower()]

    def unknown(self, key_path: tuple, known, ignored_prefixes: tuple = (), defaults: dict | None = None) -> None:
        """Refuse a key of the mapping at ``key_path`` that tplan neither reads nor knows to be
        irrelevant to memory and speed (it could change either), unless it holds one of the values
        ``defaults`` lists for it (what the engine does when the key is absent)."""
        defaults = defaults or {}
        for key, value in self.section(key_path).items():
            if key in known or key.startswith(ignored_prefixes):
                continue
            if key in defaults:
                if not any(same_value(value, default) for default in defaults[key]):
                    shown = " or ".join(dict.fromkeys(quote(default) for default in defaults[key]))
                    raise self.error(key_path + (key,), f"{key} at its default {shown}, or absent (tplan does not "
                                                        f"model {key} {quote(value)}, which can change memory or speed)")
                continue
            raise self.error(key_path + (key,), f"a setting tplan reads or knows not to change memory or "
                                                f"speed, not {quote(key)} (remove it, or check a tplan config)")


def same_value(value, default) -> bool:
    """Whether a file's value is ``default``: equal and of the same kind (false is not 0; 1 is 1.0)."""
    def kind(item):
        return "number" if isinstance(item, (int, float)) and not isinstance(item, bool) else type(item)
    return kind(value) == kind(default) and value == default
