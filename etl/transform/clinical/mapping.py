"""The mapping language: ``mappings/*.yaml`` read, checked and compiled into rules (no collection by name).

A collection is described only by its YAML file (source sheets and header rows, the patient-id rule and, per
target variable, one rule). Rules are a small closed set of named operations (``value``,
``whole_years_from_days``, ``any_of``, ``combine``, ``cases``; see the package docstring); a mapping error is a
ConfigError naming the file and the key.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from etl.errors import ConfigError
from etl.transform.clinical.values import clean_name, code, code_map, codes
from etl.yamlfile import load_yaml_mapping

NORMALIZE_FILE = "normalize.yaml"

_VARIABLE_KEYS = {"sheet", "column", "map", "scale", "round", "type", "on_unknown", "derive", "note"}
_OPS = ("value", "whole_years_from_days", "any_of", "combine", "cases")
ROUNDING: dict[str, Callable[[float], int]] = {"floor": math.floor, "nearest": round, "ceil": math.ceil}


@dataclass(frozen=True)
class SheetSpec:
    """Where one sheet's table starts and which column holds the patient id."""

    alias: str
    name: str
    header_rows: int
    name_row: int
    id_column: str


@dataclass(frozen=True)
class SourceSpec:
    file: str
    sheets: dict[str, SheetSpec]
    default_sheet: str
    id_match: re.Pattern[str]
    id_format: str
    missing_codes: frozenset[str]


@dataclass(frozen=True)
class Rule:
    """One target variable's rule, as declared in the mapping file."""

    target: str
    op: str
    sheet: str
    columns: tuple[str, ...]
    params: dict[str, Any]
    on_unknown: str  # "error" | "null"

    def describe(self) -> str:
        """Short human-readable form for lineage and logs, e.g. ``map(ER)``."""
        cols = ", ".join(self.columns)
        if self.op == "value":
            parts = ["map" if "map" in self.params else "copy", f"({cols})"]
            if self.params.get("scale") is not None:
                parts.append(f" x {self.params['scale']}")
            if self.params.get("round"):
                parts.append(f" {self.params['round']}")
            return "".join(parts)
        extra = ""
        if self.op == "whole_years_from_days":
            extra = f", days_per_year={self.params['days_per_year']}, sign={self.params['sign']}"
        if self.op == "cases":
            extra = f"; {len(self.params['cases'])} cases"
        return f"{self.op}({cols}{extra})"


@dataclass(frozen=True)
class TciaRule:
    collection: str
    match: re.Pattern[str]
    format: str

    def patient_id(self, table_id: str) -> str | None:
        m = self.match.match(table_id)
        return self.format.format(**m.groupdict()) if m else None


@dataclass(frozen=True)
class CollectionMapping:
    """Everything one mapping file says about a collection."""

    dataset: str
    path: Path
    tcia: TciaRule | None
    source: SourceSpec | None
    rules: dict[str, Rule]
    known_discrepancies: list[dict[str, Any]] = field(default_factory=list)


def config_where(where: Path, key: str) -> str:
    return f"{where}: {key}"


def load_yaml(path: Path) -> dict[str, Any]:
    return load_yaml_mapping(path, "mapping file")


def compile_regex(pattern: Any, where: str) -> re.Pattern[str]:
    if not isinstance(pattern, str):
        raise ConfigError("expected a regular expression", where)
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ConfigError(f"bad regular expression {pattern!r}: {exc}", where) from exc


def load_mapping(path: str | Path) -> CollectionMapping:
    """Parse and check one collection mapping file (``kind: collection``)."""
    path = Path(path)
    data = load_yaml(path)
    if data.get("kind") != "collection":
        raise ConfigError("not a collection mapping (kind: collection expected)", str(path))
    dataset = data.get("dataset")
    if not isinstance(dataset, str) or not dataset:
        raise ConfigError("missing 'dataset'", str(path))

    tcia = None
    if "tcia" in data:
        t = data["tcia"] or {}
        pid = t.get("patient_id") or {}
        if not isinstance(t.get("collection"), str) or "match" not in pid or "format" not in pid:
            raise ConfigError("tcia needs collection, patient_id.match and patient_id.format", config_where(path, "tcia"))
        tcia = TciaRule(t["collection"], compile_regex(pid["match"], config_where(path, "tcia.patient_id.match")), str(pid["format"]))

    source = _parse_source(data["source"], path) if data.get("source") else None
    rules: dict[str, Rule] = {}
    variables = data.get("variables") or {}
    if variables and source is None:
        raise ConfigError("'variables' need a 'source'", str(path))
    if not isinstance(variables, dict):
        raise ConfigError("'variables' must be a mapping of target variable -> rule", config_where(path, "variables"))
    for target, spec in variables.items():
        assert source is not None
        rules[str(target)] = _parse_rule(str(target), spec, source, path)
    known = data.get("known_discrepancies") or []
    if not isinstance(known, list):
        raise ConfigError("'known_discrepancies' must be a list", config_where(path, "known_discrepancies"))
    return CollectionMapping(dataset, path, tcia, source, rules, known)


def _parse_source(s: Any, path: Path) -> SourceSpec:
    where = config_where(path, "source")
    if not isinstance(s, dict) or not isinstance(s.get("sheets"), dict) or not s["sheets"]:
        raise ConfigError("source needs 'sheets'", where)
    sheets: dict[str, SheetSpec] = {}
    for alias, sh in s["sheets"].items():
        w = f"{where}.sheets.{alias}"
        if not isinstance(sh, dict) or not sh.get("name") or not sh.get("id_column"):
            raise ConfigError("sheet needs 'name' and 'id_column'", w)
        header_rows = int(sh.get("header_rows", 1))
        name_row = int(sh.get("name_row", header_rows))
        if not 1 <= name_row <= header_rows:
            raise ConfigError("name_row must be within the header rows", w)
        sheets[str(alias)] = SheetSpec(str(alias), str(sh["name"]), header_rows, name_row, clean_name(sh["id_column"]))
    default = str(s.get("default_sheet", next(iter(sheets))))
    if default not in sheets:
        raise ConfigError(f"default_sheet {default!r} is not one of the sheets", where)
    pid = s.get("patient_id") or {}
    if "match" not in pid or "format" not in pid:
        raise ConfigError("source.patient_id needs 'match' and 'format'", where)
    missing = codes(s.get("missing_codes") or [], f"{where}.missing_codes")
    return SourceSpec(
        str(s.get("file", "")), sheets, default, compile_regex(pid["match"], f"{where}.patient_id.match"), str(pid["format"]), missing
    )


def _parse_rule(target: str, spec: Any, source: SourceSpec, path: Path) -> Rule:
    where = config_where(path, f"variables.{target}")
    if not isinstance(spec, dict):
        raise ConfigError("a variable rule must be a mapping", where)
    unknown = set(spec) - _VARIABLE_KEYS
    if unknown:
        raise ConfigError(f"unknown key(s) {sorted(unknown)}; allowed: {sorted(_VARIABLE_KEYS)}", where)
    sheet = str(spec.get("sheet", source.default_sheet))
    if sheet not in source.sheets:
        raise ConfigError(f"sheet {sheet!r} is not declared under source.sheets", where)
    on_unknown = spec.get("on_unknown", "error")
    on_unknown = "null" if on_unknown is None else str(on_unknown)  # YAML reads `on_unknown: null` as None
    if on_unknown not in ("error", "null"):
        raise ConfigError("on_unknown must be 'error' or 'null'", where)
    derive = spec.get("derive")
    params: dict[str, Any]
    columns: tuple[str, ...]
    if derive is None:
        if "column" not in spec:
            raise ConfigError("a rule needs 'column' or 'derive'", where)
        op = "value"
        params = {k: spec[k] for k in ("map", "scale", "round", "type") if k in spec}
        columns = (clean_name(spec["column"]),)
    else:
        if not isinstance(derive, dict) or derive.get("op") not in _OPS[1:]:
            raise ConfigError(f"derive.op must be one of {list(_OPS[1:])}", where)
        op = derive["op"]
        params = {k: v for k, v in derive.items() if k != "op"}
        columns = _rule_columns(op, params, spec, where)
    if "map" in params:
        if not isinstance(params["map"], dict):
            raise ConfigError("'map' must be a mapping code -> value", where)
        params["map"] = code_map(params["map"], where)
    if params.get("round") is not None and params["round"] not in ROUNDING:
        raise ConfigError(f"round must be one of {sorted(ROUNDING)}", where)
    if params.get("type", "number") not in ("number", "text"):
        raise ConfigError("type must be 'number' or 'text'", where)
    if op == "whole_years_from_days":
        params.setdefault("sign", 1)
        if not isinstance(params.get("days_per_year"), (int, float)) or params["days_per_year"] <= 0:
            raise ConfigError("whole_years_from_days needs a positive days_per_year", where)
    if op == "any_of":
        params["positive"] = codes(params.get("positive", [1]), where)
        params["negative"] = codes(params.get("negative", [0]), where)
    return Rule(target, op, sheet, columns, params, on_unknown)


def _rule_columns(op: str, params: dict[str, Any], spec: dict[str, Any], where: str) -> tuple[str, ...]:
    if op == "whole_years_from_days":
        col = params.pop("column", spec.get("column"))
        if not col:
            raise ConfigError("whole_years_from_days needs 'column'", where)
        return (clean_name(col),)
    if op in ("any_of", "combine"):
        cols = params.pop("columns", None)
        if not isinstance(cols, list) or not cols:
            raise ConfigError(f"{op} needs a list 'columns'", where)
        if op == "combine" and not isinstance(params.get("map"), dict):
            raise ConfigError("combine needs a 'map' keyed by comma-joined codes", where)
        if op == "combine":
            keyed = {",".join(code(p) for p in str(k).split(",")): v for k, v in params["map"].items()}
            if len(keyed) != len(params["map"]):
                raise ConfigError("two keys of the combine map are the same combination", where)
            params["map"] = keyed
        return tuple(clean_name(c) for c in cols)
    # cases
    cases = params.get("cases")
    if not isinstance(cases, list) or not cases:
        raise ConfigError("cases needs a non-empty list 'cases'", where)
    case_cols: list[str] = []
    parsed = []
    for i, case in enumerate(cases):
        w = f"{where}.cases[{i}]"
        if not isinstance(case, dict) or "when" not in case or ("from" in case) == ("value" in case):
            raise ConfigError("each case needs 'when' and exactly one of 'from' / 'value'", w)
        cond = _parse_condition(case["when"], w, case_cols)
        src = None
        if "from" in case:
            src = clean_name(case["from"])
            case_cols.append(src)
        parsed.append((cond, src, case.get("value")))
    params["cases"] = parsed
    return tuple(dict.fromkeys(case_cols))


def _parse_condition(cond: Any, where: str, cols: list[str]) -> tuple:
    """Conditions: {column, in: [codes]} | {column, is: number|missing|present} | {all: [...]} | {any: [...]}."""
    if not isinstance(cond, dict):
        raise ConfigError("a condition must be a mapping", where)
    for combinator in ("all", "any"):
        if combinator in cond:
            items = cond[combinator]
            if not isinstance(items, list) or not items:
                raise ConfigError(f"'{combinator}' needs a list of conditions", where)
            return (combinator, tuple(_parse_condition(c, where, cols) for c in items))
    if "column" not in cond:
        raise ConfigError("a condition needs 'column'", where)
    col = clean_name(cond["column"])
    cols.append(col)
    if "in" in cond:
        return ("in", col, codes(cond["in"], where))
    if cond.get("is") in ("number", "missing", "present"):
        return ("is", col, cond["is"])
    raise ConfigError("a condition needs 'in: [codes]' or 'is: number|missing|present'", where)


def load_collections(folder: str | Path | None = None) -> dict[str, CollectionMapping]:
    """All collection mappings of a folder (default: the shipped ``mappings/``), keyed by dataset."""
    if folder is None:
        from etl.resources import data_root

        folder = data_root("mappings")
    out: dict[str, CollectionMapping] = {}
    for path in sorted(Path(folder).glob("*.yaml")):
        if path.name == NORMALIZE_FILE:
            continue
        m = load_mapping(path)
        if m.dataset in out:
            raise ConfigError(f"dataset {m.dataset} is mapped twice (also {out[m.dataset].path.name})", str(path))
        out[m.dataset] = m
    return out


def check_targets(mappings: Iterable[CollectionMapping], columns: Iterable[str]) -> None:
    """Every mapped target must be a table column (a typo in a mapping would otherwise vanish silently)."""
    known = set(columns)
    for m in mappings:
        for target in m.rules:
            if target not in known:
                raise ConfigError(f"variable {target!r} is not a column of the table", config_where(m.path, f"variables.{target}"))
