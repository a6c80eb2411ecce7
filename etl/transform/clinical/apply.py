"""Applying a collection's rules to its source rows: one value per target variable and patient, with lineage.

Each operation sees one patient's row (``_Cell``) and returns a value or raises a ValidationFailed naming
file, sheet, column, row and value (an unknown code, unless the rule says ``on_unknown: null``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from etl.errors import ValidationFailed
from etl.transform.clinical.mapping import ROUNDING, CollectionMapping, Rule
from etl.transform.clinical.source import SheetData, SourceData
from etl.transform.clinical.values import cell_key, code, number

@dataclass
class _Cell:
    """What an operation sees of one patient's row, with the context an error message needs."""

    source: SourceData
    sheet: SheetData
    index: dict[str, int]
    rownum: int
    row: tuple[Any, ...]
    missing_codes: frozenset[str]

    def get(self, column: str) -> Any:
        i = self.index[column]
        v = self.row[i] if i < len(self.row) else None
        return v.strip() if isinstance(v, str) else v

    def missing(self, value: Any) -> bool:
        return cell_key(value) == "" or code(value) in self.missing_codes

    def where(self, column: str) -> str:
        return f"{self.source.path}, sheet {self.sheet.spec.name!r}, column {column!r}, row {self.rownum}"


def _unknown(rule: Rule, cell: _Cell, column: str, value: Any, what: str = "unknown code") -> Any:
    if rule.on_unknown == "null":
        return None
    raise ValidationFailed(f"{what} {value!r} for {rule.target}", cell.where(column))


def _op_value(rule: Rule, cell: _Cell) -> Any:
    col = rule.columns[0]
    raw = cell.get(col)
    mapping = rule.params.get("map")
    if mapping is not None:
        key = code(raw)
        if key in mapping:
            return mapping[key]
        if cell.missing(raw):
            return None
        return _unknown(rule, cell, col, raw)
    if cell.missing(raw):
        return None
    if rule.params.get("type") == "text":
        return cell_key(raw)
    num = number(raw)
    if num is None:
        return _unknown(rule, cell, col, raw, "not a number:")
    if rule.params.get("scale") is not None:
        num *= float(rule.params["scale"])
    if rule.params.get("round"):
        num = ROUNDING[rule.params["round"]](num)
    return num


def _op_whole_years(rule: Rule, cell: _Cell) -> Any:
    col = rule.columns[0]
    raw = cell.get(col)
    if cell.missing(raw):
        return None
    num = number(raw)
    if num is None:
        return _unknown(rule, cell, col, raw, "not a number:")
    days = num * float(rule.params["sign"])
    if days < 0:
        return _unknown(rule, cell, col, raw, "day offset of the wrong sign:")
    return math.floor(days / float(rule.params["days_per_year"]))


def _op_any_of(rule: Rule, cell: _Cell) -> Any:
    pos, neg = rule.params["positive"], rule.params["negative"]
    all_negative = True
    for col in rule.columns:
        raw = cell.get(col)
        k = code(raw)
        if k in pos:
            return 1
        if k in neg:
            continue
        if not cell.missing(raw):
            return _unknown(rule, cell, col, raw)
        all_negative = False
    return 0 if all_negative else None


def _op_combine(rule: Rule, cell: _Cell) -> Any:
    values = [cell.get(c) for c in rule.columns]
    if any(cell.missing(v) for v in values):
        return None
    key = ",".join(code(v) for v in values)
    if key in rule.params["map"]:
        return rule.params["map"][key]
    return _unknown(rule, cell, "+".join(rule.columns), key, "unknown combination")


def _holds(cond: tuple, cell: _Cell) -> bool:
    kind = cond[0]
    if kind == "all":
        return all(_holds(c, cell) for c in cond[1])
    if kind == "any":
        return any(_holds(c, cell) for c in cond[1])
    raw = cell.get(cond[1])
    if kind == "in":
        return code(raw) in cond[2]
    if cond[2] == "number":
        return number(raw) is not None
    if cond[2] == "missing":
        return cell.missing(raw)
    return not cell.missing(raw)


def _op_cases(rule: Rule, cell: _Cell) -> Any:
    for cond, src, value in rule.params["cases"]:
        if _holds(cond, cell):
            if src is None:
                return value
            raw = cell.get(src)
            num = number(raw)
            if num is None:
                return _unknown(rule, cell, src, raw, "not a number:")
            return num
    seen = {c: cell.get(c) for c in rule.columns}
    if rule.on_unknown == "null":
        return None
    raise ValidationFailed(f"no case of {rule.target} matches the values {seen}", cell.where(", ".join(rule.columns)))


_OPERATIONS: dict[str, Callable[[Rule, _Cell], Any]] = {
    "value": _op_value,
    "whole_years_from_days": _op_whole_years,
    "any_of": _op_any_of,
    "combine": _op_combine,
    "cases": _op_cases,
}


@dataclass
class MappedValues:
    """Result of applying one collection's rules: values per target, and how each was produced."""

    dataset: str
    values: dict[str, list[Any]]
    lineage: dict[str, dict[str, Any]]


def apply_mapping(mapping: CollectionMapping, source: SourceData, patient_ids: list[str]) -> MappedValues:
    """Evaluate every rule of ``mapping`` for ``patient_ids`` (table ids, in order).

    A patient the manifest lists but the source lacks is an error: the curator must see it, not a blank row.
    """
    assert mapping.source is not None
    file = str(source.path)
    for alias, sheet in source.sheets.items():
        missing = [p for p in patient_ids if p not in sheet.rows]
        if missing:
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise ValidationFailed(
                f"{len(missing)} {mapping.dataset} case(s) of the manifest are not in the source: "
                f"{', '.join(missing[:5])}{more}",
                f"{file}, sheet {sheet.spec.name!r}",
            )
    # resolve every column once, before any row, so a renamed column fails with its name
    indexes: dict[str, dict[str, int]] = {}
    for rule in mapping.rules.values():
        sheet = source.sheets[rule.sheet]
        idx = indexes.setdefault(rule.sheet, {})
        for col in rule.columns:
            idx[col] = sheet.index(col, file)

    values: dict[str, list[Any]] = {t: [] for t in mapping.rules}
    cells = {
        alias: [
            _Cell(source, source.sheets[alias], indexes.get(alias, {}), *source.sheets[alias].rows[p], mapping.source.missing_codes)
            for p in patient_ids
        ]
        for alias in source.sheets
    }
    for target, rule in mapping.rules.items():
        op = _OPERATIONS[rule.op]
        values[target] = [op(rule, c) for c in cells[rule.sheet]]
    lineage = {
        target: {
            "source": f"{mapping.dataset.lower()}:{source.path.name}",
            "sheet": source.sheets[rule.sheet].spec.name,
            "columns": list(rule.columns),
            "rule": rule.describe(),
            "mapping": mapping.path.name,
            "values": sum(v is not None for v in values[target]),
        }
        for target, rule in mapping.rules.items()
    }
    return MappedValues(mapping.dataset, values, lineage)
