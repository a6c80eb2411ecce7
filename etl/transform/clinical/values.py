"""What a spreadsheet cell means to the mapping language: header names, codes and numbers.

Codes compare by meaning (``1``, ``1.0`` and ``" 1 "`` are one code; text codes ignore case and surrounding
whitespace), so an edit of a source sheet that keeps the meaning keeps the mapping working.
"""

from __future__ import annotations

import math
from typing import Any

from etl.errors import ConfigError


def clean_name(name: Any) -> str:
    """Header text as matched by mappings: whitespace runs collapsed, trimmed."""
    return " ".join(str(name).split())


def cell_key(value: Any) -> str:
    """Canonical text of a code so that 1, 1.0 and "1" are the same key."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        if value.is_integer():
            return str(int(value))
        return repr(value)
    if isinstance(value, int):
        return str(value)
    return " ".join(str(value).split())


def code(value: Any) -> str:
    """Canonical form of a code cell or a code in a mapping, so that edits that keep the meaning match.

    ``1``, ``1.0``, ``"1"``, ``" 1.0 "`` are the same code (numbers stored as text); text codes match after
    collapsing whitespace and ignoring case (``"NP"``, ``"np "``). Used for code lookups only, never for ids.
    """
    if isinstance(value, str):
        num = number(value)
        if num is not None and math.isfinite(num):
            return cell_key(num)
        return cell_key(value).casefold()
    return cell_key(value)


def codes(values: Any, where: str) -> frozenset[str]:
    if not isinstance(values, list):
        raise ConfigError("expected a list of codes", where)
    return frozenset(code(v) for v in values)


def code_map(mapping: dict[Any, Any], where: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    seen: dict[str, Any] = {}
    for k, v in mapping.items():
        c = code(k)
        if c in seen:
            raise ConfigError(f"map keys {seen[c]!r} and {k!r} are the same code", where)
        seen[c], out[c] = k, v
    return out


def number(value: Any) -> float | None:
    """The numeric value of a cell, or None if it is not a number."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return None if isinstance(value, float) and math.isnan(value) else float(value)
    if isinstance(value, str):
        try:
            f = float(value.strip())
        except ValueError:
            return None
        return None if math.isnan(f) else f
    return None
