"""The one clinical mapping engine: source spreadsheets -> table variables, driven by ``mappings/*.yaml``.

A collection is described only by its YAML file (source sheets and header rows, the patient-id rule and, per
target variable, one rule); this module knows no collection by name. Rules are a small closed set of named
operations so that a curator can read every mapping without reading Python:

``value``                 one column, optionally through a code ``map``, ``scale`` (unit conversion), ``round``
``whole_years_from_days`` age in whole years from a day offset (``days_per_year``, ``sign``)
``any_of``                1 if any column holds a ``positive`` code, 0 if all hold ``negative`` codes
``combine``               a code map keyed by several columns (``"1,0": luminal``)
``cases``                 first matching condition wins; its result is a constant or another column

Codes compare by meaning (``1``, ``1.0`` and ``" 1 "`` are one code; text codes ignore case and surrounding
whitespace); a code that a map does not list is an error naming file, sheet, column, row and value, unless
the rule says ``on_unknown: null``. Sheets are read by header text, wherever the header and columns sit. Carried-forward tables are cleaned by :class:`Normalizer` (``mappings/normalize.yaml``),
which counts every change it makes.
"""

from __future__ import annotations

import itertools
import logging
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from etl.yamlfile import load_yaml_mapping
from etl.errors import ConfigError, InputUnreadable, ValidationFailed

log = logging.getLogger("etl.transform.clinical")

NORMALIZE_FILE = "normalize.yaml"

_VARIABLE_KEYS = {"sheet", "column", "map", "scale", "round", "type", "on_unknown", "derive", "note"}
_OPS = ("value", "whole_years_from_days", "any_of", "combine", "cases")
_ROUNDING = {"floor": math.floor, "nearest": round, "ceil": math.ceil}


# --------------------------------------------------------------------------------------------------------
# mapping files
# --------------------------------------------------------------------------------------------------------


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


def _cfg(where: Path, key: str) -> str:
    return f"{where}: {key}"


def _load_yaml(path: Path) -> dict[str, Any]:
    return load_yaml_mapping(path, "mapping file")


def _regex(pattern: Any, where: str) -> re.Pattern[str]:
    if not isinstance(pattern, str):
        raise ConfigError("expected a regular expression", where)
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ConfigError(f"bad regular expression {pattern!r}: {exc}", where) from exc


def load_mapping(path: str | Path) -> CollectionMapping:
    """Parse and check one collection mapping file (``kind: collection``)."""
    path = Path(path)
    data = _load_yaml(path)
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
            raise ConfigError("tcia needs collection, patient_id.match and patient_id.format", _cfg(path, "tcia"))
        tcia = TciaRule(t["collection"], _regex(pid["match"], _cfg(path, "tcia.patient_id.match")), str(pid["format"]))

    source = _parse_source(data["source"], path) if data.get("source") else None
    rules: dict[str, Rule] = {}
    variables = data.get("variables") or {}
    if variables and source is None:
        raise ConfigError("'variables' need a 'source'", str(path))
    if not isinstance(variables, dict):
        raise ConfigError("'variables' must be a mapping of target variable -> rule", _cfg(path, "variables"))
    for target, spec in variables.items():
        assert source is not None
        rules[str(target)] = _parse_rule(str(target), spec, source, path)
    known = data.get("known_discrepancies") or []
    if not isinstance(known, list):
        raise ConfigError("'known_discrepancies' must be a list", _cfg(path, "known_discrepancies"))
    return CollectionMapping(dataset, path, tcia, source, rules, known)


def _parse_source(s: Any, path: Path) -> SourceSpec:
    where = _cfg(path, "source")
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
        sheets[str(alias)] = SheetSpec(str(alias), str(sh["name"]), header_rows, name_row, _clean_name(sh["id_column"]))
    default = str(s.get("default_sheet", next(iter(sheets))))
    if default not in sheets:
        raise ConfigError(f"default_sheet {default!r} is not one of the sheets", where)
    pid = s.get("patient_id") or {}
    if "match" not in pid or "format" not in pid:
        raise ConfigError("source.patient_id needs 'match' and 'format'", where)
    missing = _codes(s.get("missing_codes") or [], f"{where}.missing_codes")
    return SourceSpec(
        str(s.get("file", "")), sheets, default, _regex(pid["match"], f"{where}.patient_id.match"), str(pid["format"]), missing
    )


def _parse_rule(target: str, spec: Any, source: SourceSpec, path: Path) -> Rule:
    where = _cfg(path, f"variables.{target}")
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
    if derive is None:
        if "column" not in spec:
            raise ConfigError("a rule needs 'column' or 'derive'", where)
        op = "value"
        params = {k: spec[k] for k in ("map", "scale", "round", "type") if k in spec}
        columns = (_clean_name(spec["column"]),)
    else:
        if not isinstance(derive, dict) or derive.get("op") not in _OPS[1:]:
            raise ConfigError(f"derive.op must be one of {list(_OPS[1:])}", where)
        op = derive["op"]
        params = {k: v for k, v in derive.items() if k != "op"}
        columns = _rule_columns(op, params, spec, where)
    if "map" in params:
        if not isinstance(params["map"], dict):
            raise ConfigError("'map' must be a mapping code -> value", where)
        params["map"] = _code_map(params["map"], where)
    if params.get("round") is not None and params["round"] not in _ROUNDING:
        raise ConfigError(f"round must be one of {sorted(_ROUNDING)}", where)
    if params.get("type", "number") not in ("number", "text"):
        raise ConfigError("type must be 'number' or 'text'", where)
    if op == "whole_years_from_days":
        params.setdefault("sign", 1)
        if not isinstance(params.get("days_per_year"), (int, float)) or params["days_per_year"] <= 0:
            raise ConfigError("whole_years_from_days needs a positive days_per_year", where)
    if op == "any_of":
        params["positive"] = _codes(params.get("positive", [1]), where)
        params["negative"] = _codes(params.get("negative", [0]), where)
    return Rule(target, op, sheet, columns, params, on_unknown)


def _rule_columns(op: str, params: dict[str, Any], spec: dict[str, Any], where: str) -> tuple[str, ...]:
    if op == "whole_years_from_days":
        col = params.pop("column", spec.get("column"))
        if not col:
            raise ConfigError("whole_years_from_days needs 'column'", where)
        return (_clean_name(col),)
    if op in ("any_of", "combine"):
        cols = params.pop("columns", None)
        if not isinstance(cols, list) or not cols:
            raise ConfigError(f"{op} needs a list 'columns'", where)
        if op == "combine" and not isinstance(params.get("map"), dict):
            raise ConfigError("combine needs a 'map' keyed by comma-joined codes", where)
        if op == "combine":
            keyed = {",".join(_code(p) for p in str(k).split(",")): v for k, v in params["map"].items()}
            if len(keyed) != len(params["map"]):
                raise ConfigError("two keys of the combine map are the same combination", where)
            params["map"] = keyed
        return tuple(_clean_name(c) for c in cols)
    # cases
    cases = params.get("cases")
    if not isinstance(cases, list) or not cases:
        raise ConfigError("cases needs a non-empty list 'cases'", where)
    cols: list[str] = []
    parsed = []
    for i, case in enumerate(cases):
        w = f"{where}.cases[{i}]"
        if not isinstance(case, dict) or "when" not in case or ("from" in case) == ("value" in case):
            raise ConfigError("each case needs 'when' and exactly one of 'from' / 'value'", w)
        cond = _parse_condition(case["when"], w, cols)
        src = None
        if "from" in case:
            src = _clean_name(case["from"])
            cols.append(src)
        parsed.append((cond, src, case.get("value")))
    params["cases"] = parsed
    return tuple(dict.fromkeys(cols))


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
    col = _clean_name(cond["column"])
    cols.append(col)
    if "in" in cond:
        return ("in", col, _codes(cond["in"], where))
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
                raise ConfigError(f"variable {target!r} is not a column of the table", _cfg(m.path, f"variables.{target}"))


# --------------------------------------------------------------------------------------------------------
# reading a source workbook
# --------------------------------------------------------------------------------------------------------


def _clean_name(name: Any) -> str:
    """Header text as matched by mappings: whitespace runs collapsed, trimmed."""
    return " ".join(str(name).split())


def _key(value: Any) -> str:
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


def _code(value: Any) -> str:
    """Canonical form of a code cell or a code in a mapping, so that edits that keep the meaning match.

    ``1``, ``1.0``, ``"1"``, ``" 1.0 "`` are the same code (numbers stored as text); text codes match after
    collapsing whitespace and ignoring case (``"NP"``, ``"np "``). Used for code lookups only, never for ids.
    """
    if isinstance(value, str):
        num = _number(value)
        if num is not None and math.isfinite(num):
            return _key(num)
        return _key(value).casefold()
    return _key(value)


def _codes(values: Any, where: str) -> frozenset[str]:
    if not isinstance(values, list):
        raise ConfigError("expected a list of codes", where)
    return frozenset(_code(v) for v in values)


def _code_map(mapping: dict[Any, Any], where: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    seen: dict[str, Any] = {}
    for k, v in mapping.items():
        c = _code(k)
        if c in seen:
            raise ConfigError(f"map keys {seen[c]!r} and {k!r} are the same code", where)
        seen[c], out[c] = k, v
    return out


def _number(value: Any) -> float | None:
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


def _fold(name: Any) -> str:
    return _clean_name(name).casefold()


def _closest(wanted: str, names: Iterable[str]) -> str:
    """``"; closest: 'pCR'"`` for an error message about a name that is not there (never used as a match)."""
    import difflib

    folded: dict[str, str] = {}
    for n in names:
        folded.setdefault(_fold(n), n)
    close = difflib.get_close_matches(_fold(wanted), list(folded), n=3, cutoff=0.6)
    return f"; closest: {', '.join(repr(folded[c]) for c in close)}" if close else ""


def _header_columns(row: tuple[Any, ...]) -> dict[str, list[int]]:
    columns: dict[str, list[int]] = {}
    for i, name in enumerate(row):
        if name is not None and _clean_name(name):
            columns.setdefault(_clean_name(name), []).append(i)
    return columns


def _blank(row: tuple[Any, ...]) -> bool:
    return all(v is None or (isinstance(v, str) and not v.strip()) for v in row)


@dataclass
class SheetData:
    """One sheet: column name -> index, and each patient's row (with its spreadsheet row number)."""

    spec: SheetSpec
    columns: dict[str, list[int]]
    rows: dict[str, tuple[int, tuple[Any, ...]]]
    header_row: int = 0  # spreadsheet row of the column names (the declared name_row unless rows were added)

    def index(self, column: str, file: str) -> int:
        where = f"{file}, sheet {self.spec.name!r}"
        hits = self.columns.get(column)
        if not hits:
            raise InputUnreadable(
                f"column {column!r} not found in the header (row {self.header_row or self.spec.name_row})"
                f"{_closest(column, self.columns)}",
                where,
            )
        if len(hits) > 1:
            from etl.transform.xlsx_values import column_letter

            letters = ", ".join(column_letter(i) for i in hits)
            raise ConfigError(f"column name {column!r} is ambiguous (columns {letters})", where)
        return hits[0]


@dataclass
class SourceData:
    """A source workbook read once: the declared sheets, by alias."""

    path: Path
    sheets: dict[str, SheetData]


def read_source(mapping: CollectionMapping, path: str | Path) -> SourceData:
    """Read the sheets a mapping declares (cell values) and index their rows by table patient id.

    Sheets are found by exact name, columns by header text (whitespace runs collapsed) in any order; a
    column that is not there is an error that suggests the closest names present.
    """
    from etl.transform.xlsx_values import ValueWorkbook

    path = Path(path)
    if mapping.source is None:
        raise ConfigError(f"collection {mapping.dataset} has no source section", str(mapping.path))
    sheets = {}
    with ValueWorkbook(path) as book:
        for alias, spec in mapping.source.sheets.items():
            if spec.name not in book.sheet_names:
                raise InputUnreadable(f"sheet {spec.name!r} not found (sheets: {', '.join(book.sheet_names)})", str(path))
            sheets[alias] = _read_sheet(book.rows(spec.name), spec, mapping.source, path)
    return SourceData(path, sheets)


HEADER_SEARCH = 10  # extra non-blank rows searched for the header when it is not where the mapping says


def _read_sheet(rows: Iterator[tuple[int, tuple[Any, ...]]], spec: SheetSpec, source: SourceSpec, path: Path) -> SheetData:
    """Locate the header, then index the body rows by table patient id.

    The column names are in the ``name_row``-th non-blank row (blank rows above or between header rows do
    not count); if that row lacks the id column, the first of the next few non-blank rows that has it is
    used (an added title line). After it, up to ``header_rows - name_row`` further rows are header rows
    (e.g. code legends) unless their id cell is a patient id.
    """
    where = f"{path}, sheet {spec.name!r}"
    head: list[tuple[int, tuple[Any, ...]]] = []
    for rownum, row in rows:
        if _blank(row):
            continue
        head.append((rownum, row))
        if len(head) >= spec.header_rows + HEADER_SEARCH:
            break
    if not head:
        raise InputUnreadable("sheet is empty", where)
    candidates = [i for i, (_, row) in enumerate(head) if spec.id_column in _header_columns(row)]
    declared = spec.name_row - 1
    if not candidates:
        raise InputUnreadable(
            f"no header row with the id column {spec.id_column!r} (expected in row {spec.name_row}; searched "
            f"the first {len(head)} non-blank rows){_closest(spec.id_column, _header_columns(head[min(declared, len(head) - 1)][1]))}",
            where,
        )
    pos = declared if declared in candidates else candidates[0]
    header_row, header = head[pos]
    if header_row != spec.name_row:
        log.info("%s: column names found in row %d (mapping says row %d)", where, header_row, spec.name_row)
    data = SheetData(spec, _header_columns(header), {}, header_row)
    id_idx = data.index(spec.id_column, str(path))
    rest = head[pos + 1:]
    for _ in range(spec.header_rows - spec.name_row):
        if not rest:
            break
        raw = rest[0][1][id_idx] if id_idx < len(rest[0][1]) else None
        if _key(raw) and source.id_match.match(_key(raw)):
            break  # a patient row: the header has fewer rows than declared
        rest.pop(0)
    body = itertools.chain(rest, rows)
    for rownum, row in body:
        raw = row[id_idx] if id_idx < len(row) else None
        key = _key(raw)
        if not key:
            continue  # blank line (e.g. trailing formatted rows)
        m = source.id_match.match(key)
        if not m:
            raise ValidationFailed(
                f"patient id {key!r} does not match the id rule {source.id_match.pattern!r}",
                f"{path}, sheet {spec.name!r}, column {spec.id_column!r}, row {rownum}",
            )
        pid = source.id_format.format(**m.groupdict())
        if pid in data.rows:
            raise ValidationFailed(
                f"patient id {key!r} appears twice (rows {data.rows[pid][0]} and {rownum})",
                f"{path}, sheet {spec.name!r}",
            )
        data.rows[pid] = (rownum, row)
    return data


# --------------------------------------------------------------------------------------------------------
# applying rules
# --------------------------------------------------------------------------------------------------------


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
        return _key(value) == "" or _code(value) in self.missing_codes

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
        key = _code(raw)
        if key in mapping:
            return mapping[key]
        if cell.missing(raw):
            return None
        return _unknown(rule, cell, col, raw)
    if cell.missing(raw):
        return None
    if rule.params.get("type") == "text":
        return _key(raw)
    num = _number(raw)
    if num is None:
        return _unknown(rule, cell, col, raw, "not a number:")
    if rule.params.get("scale") is not None:
        num *= float(rule.params["scale"])
    if rule.params.get("round"):
        num = _ROUNDING[rule.params["round"]](num)
    return num


def _op_whole_years(rule: Rule, cell: _Cell) -> Any:
    col = rule.columns[0]
    raw = cell.get(col)
    if cell.missing(raw):
        return None
    num = _number(raw)
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
        k = _code(raw)
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
    key = ",".join(_code(v) for v in values)
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
        return _code(raw) in cond[2]
    if cond[2] == "number":
        return _number(raw) is not None
    if cond[2] == "missing":
        return cell.missing(raw)
    return not cell.missing(raw)


def _op_cases(rule: Rule, cell: _Cell) -> Any:
    for cond, src, value in rule.params["cases"]:
        if _holds(cond, cell):
            if src is None:
                return value
            raw = cell.get(src)
            num = _number(raw)
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


# --------------------------------------------------------------------------------------------------------
# normalization of carried-forward tables
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Normalizer:
    """Value normalization declared in ``mappings/normalize.yaml``; counts every change it makes."""

    path: Path
    strip: bool
    replace: dict[str, dict[str, str]]
    patterns: dict[str, list[tuple[re.Pattern[str], str]]]

    @classmethod
    def load(cls, path: str | Path | None = None) -> Normalizer:
        if path is None:
            from etl.resources import data_path

            path = data_path(f"mappings/{NORMALIZE_FILE}")
        path = Path(path)
        data = _load_yaml(path)
        if data.get("kind") != "normalize":
            raise ConfigError("not a normalization file (kind: normalize expected)", str(path))
        replace: dict[str, dict[str, str]] = {}
        patterns: dict[str, list[tuple[re.Pattern[str], str]]] = {}
        for col, spec in (data.get("columns") or {}).items():
            w = _cfg(path, f"columns.{col}")
            if not isinstance(spec, dict) or set(spec) - {"replace", "patterns"}:
                raise ConfigError("a column takes 'replace' and/or 'patterns'", w)
            replace[col] = {str(k): str(v) for k, v in (spec.get("replace") or {}).items()}
            patterns[col] = []
            for i, p in enumerate(spec.get("patterns") or []):
                if not isinstance(p, dict) or "match" not in p or "value" not in p:
                    raise ConfigError("a pattern needs 'match' and 'value'", f"{w}.patterns[{i}]")
                patterns[col].append((_regex(p["match"], f"{w}.patterns[{i}]"), str(p["value"])))
        return cls(path, bool(data.get("strip", True)), replace, patterns)

    def apply(self, df: Any) -> tuple[Any, list[dict[str, Any]]]:
        """Normalize the text columns of a table; returns the new table and one record per change kind."""
        import pandas as pd

        df = df.copy()
        changes: Counter[tuple[str, str, str, str]] = Counter()
        for col in df.columns:
            series = df[col]
            if not (pd.api.types.is_string_dtype(series.dtype) or series.dtype == object):
                continue
            if not series.map(lambda v: isinstance(v, str)).any():
                continue
            new = [self._value(col, v, changes) for v in series]
            df[col] = pd.array(new, dtype=series.dtype) if pd.api.types.is_string_dtype(series.dtype) else new
        records = [
            {"rule": rule, "column": col, "from": old, "to": new, "count": n}
            for (rule, col, old, new), n in sorted(changes.items())
        ]
        per_rule: Counter[tuple[str, str]] = Counter()
        for r in records:
            per_rule[(r["column"], r["rule"])] += r["count"]
            log.debug("normalized %s %r -> %r (%s, %d)", r["column"], r["from"], r["to"], r["rule"], r["count"])
        for (col, rule), n in sorted(per_rule.items()):
            example = next(r for r in records if r["column"] == col and r["rule"] == rule)
            log.info("normalized %s: %s changed %d value(s), e.g. %r -> %r", col, rule, n, example["from"], example["to"])
        return df, records

    def _value(self, col: str, value: Any, changes: Counter[tuple[str, str, str, str]]) -> Any:
        if not isinstance(value, str):
            return value
        out = value
        if self.strip and out != out.strip():
            changes[("strip", col, out, out.strip())] += 1
            out = out.strip()
        table = self.replace.get(col)
        if table and out in table:
            changes[("replace", col, out, table[out])] += 1
            out = table[out]
        for pattern, target in self.patterns.get(col, ()):
            if pattern.match(out):
                if out != target:
                    changes[(f"pattern {pattern.pattern}", col, out, target)] += 1
                    out = target
                break
        return out


def normalize_counts(records: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Changes per column (for summaries)."""
    out: Counter[str] = Counter()
    for r in records:
        out[str(r["column"])] += int(r["count"])
    return dict(sorted(out.items()))
