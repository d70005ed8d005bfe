"""Quantities with units in goal files: token counts, durations, memory sizes, bandwidths.

A goal may give a number in the key's own unit (tokens, seconds, GB, GB/s) or a string
with a unit a person would write ("2B", "500 M tokens", "48h", "30 days", "1TB",
"400 Gb/s"). Anything else is an InputError naming the key and the units accepted.
"""

from __future__ import annotations

import math
import re

from .errors import InputError

NUMBER = r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*"
TOKENS = {"": 1, "k": 1e3, "thousand": 1e3, "m": 1e6, "million": 1e6, "b": 1e9, "g": 1e9, "billion": 1e9,
          "t": 1e12, "trillion": 1e12}
SECONDS = {"": 1, "s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hr": 3600,
           "hour": 3600, "d": 86400, "day": 86400, "w": 604800, "week": 604800}
GIGABYTES = {"": 1, "gb": 1, "gib": 2**30 / 1e9, "tb": 1e3, "tib": 2**40 / 1e9, "mb": 1e-3, "mib": 2**20 / 1e9}
GIGABYTES_PER_SECOND = {"": 1, "gb/s": 1, "gbit/s": 1 / 8, "tb/s": 1e3}


def tokens(value, file: str, where: str) -> float:
    """A token count: 2.0e9, "2B", "500 M", "1.5T tokens"."""
    return _quantity(value, TOKENS, file, where, "a token count such as 2.0e9, 2B or 500M", 1e16,
                     suffix=r"(?:tokens?)?")


def seconds(value, file: str, where: str) -> float:
    """A duration: seconds as a number, or "90m", "48h", "30 days", "2 weeks"."""
    return _quantity(value, SECONDS, file, where, "a duration such as 48h, 90m, 3d or 2 weeks", 3.2e8,
                     suffix=r"s?")


def gigabytes(value, file: str, where: str) -> float:
    """A memory size in GB: 512, "512GB", "1TB", "480 GiB"."""
    return _quantity(value, GIGABYTES, file, where, "a size in GB such as 512, 512GB, 1TB or 480GiB", 1e7)


def gigabytes_per_second(value, file: str, where: str) -> float:
    """A bandwidth in GB/s: 50, "50 GB/s", "400 Gbps" (bits: divided by 8)."""
    if isinstance(value, str) and re.search(r"[0-9.]\s*Gb(/s|ps|it/s)", value):
        value = value.replace("Gb/s", "gbit/s").replace("Gbps", "gbit/s")  # a lower-case b is bits
    return _quantity(value, GIGABYTES_PER_SECOND, file, where, "a bandwidth such as 50, 50GB/s or 400Gbps", 1e5)


def _quantity(value, units: dict, file: str, where: str, expected: str, maximum: float,
              suffix: str = "") -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    else:
        match = isinstance(value, str) and re.fullmatch(NUMBER + r"([A-Za-z/ ()]*?)\s*" + suffix + r"\s*", value)
        unit = match.group(2).strip().lower() if match else None
        if unit not in units:
            shown = value if isinstance(value, str) and len(value) <= 40 else type(value).__name__
            raise InputError(file, where, f"{expected}, not {shown!r}")
        number = float(match.group(1)) * units[unit]
    if not math.isfinite(number) or not 0 < number <= maximum:
        raise InputError(file, where, f"{expected}, greater than 0 and at most {maximum:g} (got {value!r})")
    return number
