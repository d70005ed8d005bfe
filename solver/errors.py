"""Errors that reach the user: bad input (exit 2) with file, place and expectation."""

from __future__ import annotations


class InputError(Exception):
    """Bad input: names the file, the place in it (key path or line) and what was expected."""

    def __init__(self, file: str, where: str, expected: str):
        self.file, self.where, self.expected = str(file), where, expected
        super().__init__(f"{self.file}: {where}: expected {expected}" if where else f"{self.file}: expected {expected}")


def quote(value, limit: int = 60) -> str:
    """repr of a value for a message, shortened so that a hostile input is not echoed in full."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


def nearest(word, choices, means: dict | None = None) -> str:
    """'; did you mean 'x'?' for the closest of ``choices`` (shown as what ``means`` maps it to), or ''."""
    import difflib

    near = difflib.get_close_matches(str(word), [str(choice) for choice in choices], n=1, cutoff=0.6)
    return f"; did you mean {(means or {}).get(near[0], near[0])!r}?" if near else ""
