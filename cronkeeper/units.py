"""Durations and sizes as users write them in ``cronkeeper.toml``.

Kept in a module of its own, with no cronkeeper imports, so ``schedule.py`` and ``config.py``
can both use it without importing each other.

Durations: a number of seconds (``90``, ``1.5``, ``"90"``) or a string of one or more
``<number><unit>`` parts, units ``s m h d w`` (seconds, minutes, hours, days, weeks), each unit
at most once, optionally separated by spaces: ``"90s"``, ``"5m"``, ``"1h30m"``, ``"2d"``,
``"1w"``, ``"1.5h"``, ``"0"``.

Sizes: a number of bytes (``512``, ``"512"``) or ``<number><unit>`` with binary units
``KiB MiB GiB TiB`` (powers of 1024) or decimal units ``KB MB GB TB`` (powers of 1000, as the
SI prefixes say) or ``B``. Units are matched case-insensitively, so ``"1mib"`` is ``"1MiB"``;
``"1M"``/``"1K"`` are refused because they are ambiguous between the two families.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache

__all__ = ["parse_duration", "parse_size", "format_duration", "DURATION_FORM", "SIZE_FORM"]

DURATION_FORM = 'a number of seconds or a string like "90s", "5m", "1h30m", "2d", "1w" (units s m h d w)'
SIZE_FORM = 'a number of bytes or a string like "512KiB", "1MiB", "1GiB" (also B, KB, MB, GB, TiB, TB)'

_DURATION_UNITS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
_DURATION_PART = re.compile(r"\s*(\d+(?:\.\d+)?|\.\d+)\s*([a-z])\s*", re.IGNORECASE)
_NUMBER = re.compile(r"\s*(\d+(?:\.\d+)?|\.\d+)\s*")

_SIZE_UNITS = {
    "b": 1,
    "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4,
}
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?|\.\d+)\s*([a-z]*)\s*", re.IGNORECASE)


def _describe(value: object) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def _check_number(value: object, form: str) -> float:
    # bool is an int subclass: `timeout = true` is a mistake, not one second.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"expected {form}, got {_describe(value)}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"must be finite and not negative, got {_describe(value)}; expected {form}")
    return float(value)


def parse_duration(value: str | int | float) -> float:
    """Seconds in ``value``: ``"1h30m"`` -> 5400.0, ``90`` -> 90.0.

    Raises ``ValueError`` naming the value and the accepted form on anything else: negative
    numbers, empty strings, unknown or repeated units, booleans.
    """
    if isinstance(value, str):
        return _parse_duration_text(value)
    return _check_number(value, DURATION_FORM)


@lru_cache(maxsize=1024)
def _parse_duration_text(text: str) -> float:
    # Cached: a 10,000-task file repeats the same few strings ("30s", "1h") over and over.
    bad = ValueError(f"invalid duration {text!r}; expected {DURATION_FORM}")
    plain = _NUMBER.fullmatch(text)
    if plain:
        return float(plain.group(1))
    if not text.strip():
        raise bad
    total = 0.0
    seen: set[str] = set()
    pos = 0
    while pos < len(text):
        match = _DURATION_PART.match(text, pos)
        if not match:
            raise bad
        unit = match.group(2).lower()
        if unit not in _DURATION_UNITS or unit in seen:
            raise bad
        seen.add(unit)
        total += float(match.group(1)) * _DURATION_UNITS[unit]
        pos = match.end()
    return total


def parse_size(value: str | int | float) -> int:
    """Bytes in ``value``: ``"1MiB"`` -> 1048576, ``"10KB"`` -> 10000, ``512`` -> 512.

    Fractions are allowed in strings (``"1.5MiB"``) and rounded to whole bytes. Raises
    ``ValueError`` naming the value and the accepted form.
    """
    if isinstance(value, str):
        match = _SIZE.fullmatch(value)
        unit = match.group(2).lower() if match else ""
        if not match or (unit and unit not in _SIZE_UNITS):
            raise ValueError(f"invalid size {value!r}; expected {SIZE_FORM}")
        return round(float(match.group(1)) * _SIZE_UNITS.get(unit, 1))
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, float):
        raise ValueError(f"a size in bytes must be a whole number, got {value}; expected {SIZE_FORM}")
    return int(_check_number(value, SIZE_FORM))


def format_duration(seconds: float) -> str:
    """The inverse of ``parse_duration``: 5400 -> ``"1h30m"``, 0 -> ``"0s"``, 1.5 -> ``"1.5s"``.

    Weeks are used only for whole weeks (``"2w"``; ten days stay ``"10d"``, not ``"1w3d"``).
    ``parse_duration(format_duration(x)) == x`` for whole seconds; fractions of a second are
    shown to six significant digits.
    """
    if seconds < 0 or not math.isfinite(seconds):
        raise ValueError(f"cannot format {seconds} as a duration")
    whole = int(seconds)
    fraction = seconds - whole
    if whole and whole % _DURATION_UNITS["w"] == 0 and not fraction:
        return f"{whole // _DURATION_UNITS['w']}w"
    parts = []
    for unit in ("d", "h", "m"):
        size = _DURATION_UNITS[unit]
        if whole >= size:
            parts.append(f"{whole // size}{unit}")
            whole %= size
    if whole or fraction or not parts:
        secs = whole + fraction
        parts.append(f"{secs:g}s" if fraction else f"{whole}s")
    return "".join(parts)
