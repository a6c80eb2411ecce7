"""The 49-variable schema: loaded from ``schemas/clinical_imaging.yaml`` into pandera, plus table rules.

Why the split: per-column facts (dtype, nullability, allowed values, ranges, patterns, text formats) are
what pandera is built for, so each becomes a ``pandera.Column`` check. Table rules relate several columns
of a row (hr vs er/pr, subtype vs receptors, events vs follow-up, phases vs times) or the whole table
(unique ids); they are a small closed set of rule kinds evaluated here, vectorized, so that 1.5 M rows
validate in seconds and every failing row is reported once, on the column the rule is about.

Every finding is a ``Violation`` with row index (0-based position in the table), patient_id, column,
value, rule id and severity. Errors make a table invalid; warnings are reported and tolerated.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from etl.yamlfile import load_yaml_mapping
from etl.errors import ConfigError, ValidationFailed
from etl.resources import data_path
from etl.types import StrPath

if TYPE_CHECKING:
    import pandera.pandas as pandera

SEVERITIES = ("error", "warning")
# Text columns are Arrow-backed strings: regex and strip run vectorized in Arrow, missing is <NA>.
STRING_DTYPE = pd.StringDtype("pyarrow")
DTYPES = ("Int64", "float64", "str")
FORMATS = ("list_float", "list_int", "date")

_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_FORMAT_PATTERNS = {
    "list_float": re.compile(rf"\[\s*(?:{_NUM}\s*(?:,\s*{_NUM}\s*)*)?\]"),
    "list_int": re.compile(r"\[\s*(?:-?\d+\s*(?:,\s*-?\d+\s*)*)?\]"),
    "date": re.compile(r"\d{4}/\d{2}/\d{2}"),
}


@dataclass(frozen=True)
class Violation:
    """One finding: where it is, what value, which rule, how bad."""

    row: int | None
    patient_id: str | None
    column: str | None
    value: Any
    rule: str
    severity: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["value"] = _jsonable(self.value)
        return d

    def describe(self) -> str:
        where = []
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.patient_id:
            where.append(f"({self.patient_id})")
        if self.column:
            where.append(f"column {self.column}")
        value = "" if self.value is None else f" value {self.value!r}"
        return f"{self.severity}: {' '.join(where) or 'table'}{value}: {self.message} [{self.rule}]"


@dataclass(frozen=True)
class _Finding:
    """What a block of findings shares: the column, rule, severity and message."""

    column: str | None
    rule: str
    severity: str
    message: str


class _Findings:
    """Accumulates findings as (row, kind) integer arrays, so millions of them cost little."""

    def __init__(self) -> None:
        self.kinds: list[_Finding] = []
        self._index: dict[_Finding, int] = {}
        self.rows: list[np.ndarray] = []
        self.keys: list[np.ndarray] = []

    def add(self, rows: np.ndarray | None, column: str | None, rule: str, severity: str, message: str) -> None:
        kind = _Finding(column, rule, severity, message)
        key = self._index.setdefault(kind, len(self.kinds))
        if key == len(self.kinds):
            self.kinds.append(kind)
        rows = np.array([-1], dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)
        if len(rows):
            self.rows.append(rows)
            self.keys.append(np.full(len(rows), key, dtype=np.int32))

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        if not self.rows:
            return np.zeros(0, np.int64), np.zeros(0, np.int32)
        return np.concatenate(self.rows), np.concatenate(self.keys)


class Report:
    """All findings of one validation run.

    Findings are held as parallel integer arrays (row, kind) sorted by row, then errors first; values and
    patient ids are looked up from the validated table only when a finding is materialized, so reporting
    stays cheap even for millions of findings. Row -1 marks a table-level finding (e.g. a missing column).
    """

    def __init__(self, n_rows: int, findings: _Findings | None = None, typed: pd.DataFrame | None = None,
                 raw: pd.DataFrame | None = None) -> None:
        self.n_rows = n_rows
        findings = findings or _Findings()
        self._kinds = findings.kinds
        rows, keys = findings.arrays()
        sev = np.array([k.severity != "error" for k in self._kinds], dtype=bool)
        order = np.lexsort((keys, sev[keys] if len(keys) else keys, rows))
        self._rows, self._keys = rows[order], keys[order]
        self._typed, self._raw = typed, raw
        self._pids = _patient_ids(raw) if raw is not None else np.full(n_rows, None, dtype=object)

    def __len__(self) -> int:
        return len(self._rows)

    def _count(self, severity: str) -> int:
        wanted = np.array([k.severity == severity for k in self._kinds], dtype=bool)
        return int(wanted[self._keys].sum()) if len(self._keys) else 0

    @property
    def n_errors(self) -> int:
        return self._count("error")

    @property
    def n_warnings(self) -> int:
        return self._count("warning")

    @property
    def valid(self) -> bool:
        return self.n_errors == 0

    def iter_violations(self, severity: str | None = None, limit: int | None = None) -> Iterable[Violation]:
        """Findings in report order (by row, errors first), materialized one by one."""
        n = 0
        for row, key in zip(self._rows.tolist(), self._keys.tolist()):
            kind = self._kinds[key]
            if severity is not None and kind.severity != severity:
                continue
            if limit is not None and n >= limit:
                return
            n += 1
            yield Violation(None if row < 0 else row, None if row < 0 else self._pids[row], kind.column,
                            self._value(row, kind), kind.rule, kind.severity, kind.message)

    def _value(self, row: int, kind: _Finding) -> Any:
        if row < 0 or kind.column is None:
            return None
        frame = self._raw if kind.rule == "dtype" else self._typed
        if frame is None or kind.column not in frame.columns:
            return None
        return _scalar(frame[kind.column].iloc[row])

    @property
    def errors(self) -> list[Violation]:
        return list(self.iter_violations("error"))

    @property
    def warnings(self) -> list[Violation]:
        return list(self.iter_violations("warning"))

    def counts(self) -> dict[str, dict[str, int]]:
        """Number of findings per severity and rule id."""
        out: dict[str, dict[str, int]] = {s: {} for s in SEVERITIES}
        per_key = np.bincount(self._keys, minlength=len(self._kinds)) if len(self._keys) else np.zeros(0, np.int64)
        for kind, n in zip(self._kinds, per_key):
            if n:
                out[kind.severity][kind.rule] = out[kind.severity].get(kind.rule, 0) + int(n)
        return {sev: dict(sorted(rules.items())) for sev, rules in out.items()}

    def to_dict(self, limit: int | None = None) -> dict[str, Any]:
        return {
            "valid": self.valid,
            "n_rows": self.n_rows,
            "n_errors": self.n_errors,
            "n_warnings": self.n_warnings,
            "counts": self.counts(),
            "violations": [v.to_dict() for v in self.iter_violations(limit=limit)],
        }


@dataclass(frozen=True)
class ColumnSpec:
    name: str
    dtype: str
    group: str = "clinical"
    description: str = ""
    nullable: bool = True
    allowed: tuple[Any, ...] | None = None
    tolerated: tuple[Any, ...] = ()
    min: float | None = None
    max: float | None = None
    pattern: str | None = None
    format: str | None = None
    length: int | None = None
    positive: bool = False
    unit: str | None = None


@dataclass(frozen=True)
class RuleSpec:
    id: str
    kind: str
    severity: str
    message: str
    params: dict[str, Any]


@dataclass(frozen=True)
class Schema:
    name: str
    version: int
    columns: dict[str, ColumnSpec]
    rules: tuple[RuleSpec, ...]
    source: Path
    summary: dict[str, Any] = field(default_factory=dict)
    optional: dict[str, ColumnSpec] = field(default_factory=dict)

    def column_names(self) -> list[str]:
        return list(self.columns)

    def formats(self) -> dict[str, str]:
        return {c.name: c.format for c in self.columns.values() if c.format}

    def legend_frame(self) -> pd.DataFrame:
        """The `legend` sheet of the xlsx drop-in: field, description, options (from this schema)."""
        rows = []
        for c in self.columns.values():
            rows.append({"Field": c.name, "Description": c.description, "Options": _options_text(c)})
        return pd.DataFrame(rows, columns=["Field", "Description", "Options"])

    @functools.cached_property
    def pandera(self) -> tuple[pandera.DataFrameSchema, dict[tuple[str, int], _CheckInfo]]:
        """The pandera ``DataFrameSchema`` for the per-column facts of this schema, and what each of its
        checks reports (rule, severity, message) by (column, check number)."""
        return _build_pandera(self)


# ---------------------------------------------------------------------------------------------- loading


@functools.lru_cache(maxsize=4)
def load_schema(path: StrPath | None = None) -> Schema:
    """Load and check a schema YAML (default: the shipped ``schemas/clinical_imaging.yaml``)."""
    src = Path(path) if path else data_path("schemas/clinical_imaging.yaml")
    doc = load_yaml_mapping(src, "schema")
    columns = {name: _column_spec(name, spec, src) for name, spec in (doc.get("columns") or {}).items()}
    optional = {name: _column_spec(name, spec, src) for name, spec in (doc.get("optional_columns") or {}).items()}
    rules = []
    for raw in doc.get("rules") or []:
        raw = dict(raw)
        try:
            rule = RuleSpec(
                id=raw.pop("id"), kind=raw.pop("kind"), severity=raw.pop("severity"),
                message=raw.pop("message", ""), params=raw,
            )
        except KeyError as exc:
            raise ConfigError(f"rule without {exc.args[0]!r}", str(src)) from exc
        if rule.kind not in RULE_KINDS:
            raise ConfigError(f"rule {rule.id}: unknown kind {rule.kind!r} (known: {sorted(RULE_KINDS)})", str(src))
        if rule.severity not in SEVERITIES:
            raise ConfigError(f"rule {rule.id}: severity must be error or warning", str(src))
        rules.append(rule)
    summary = doc.get("summary") or {}
    unknown_vars = [v for v in summary.get("variables", []) if v not in columns]
    if unknown_vars:
        raise ConfigError(f"summary names unknown columns {unknown_vars}", str(src))
    return Schema(doc.get("name", src.stem), int(doc.get("version", 1)), columns, tuple(rules), src, summary, optional)


def _column_spec(name: str, spec: dict[str, Any] | None, src: Path) -> ColumnSpec:
    spec = dict(spec or {})
    dtype = spec.pop("dtype", None)
    if dtype not in DTYPES:
        raise ConfigError(f"column {name}: dtype must be one of {DTYPES}, got {dtype!r}", str(src))
    if spec.get("format") not in (None, *FORMATS):
        raise ConfigError(f"column {name}: unknown format {spec.get('format')!r}", str(src))
    for key in ("allowed", "tolerated"):
        if spec.get(key) is not None:
            spec[key] = tuple(spec[key])
    unknown = set(spec) - set(ColumnSpec.__dataclass_fields__)
    if unknown:
        raise ConfigError(f"column {name}: unknown keys {sorted(unknown)}", str(src))
    return ColumnSpec(name=name, dtype=dtype, **spec)


def column_names() -> list[str]:
    """The 49 variables, in the published order."""
    return load_schema().column_names()


def imaging_columns() -> list[str]:
    return [c.name for c in load_schema().columns.values() if c.group == "imaging"]


# ---------------------------------------------------------------------------------------------- coercion


def coerce_frame(df: pd.DataFrame, schema: Schema | None = None) -> pd.DataFrame:
    """Canonical dtypes for the known columns; a value that cannot be converted is an error naming it."""
    out, findings = _coerce(df, schema or load_schema())
    report = Report(len(df), findings, out, df)
    if len(report):
        first = next(iter(report.iter_violations()))
        more = f" (and {len(report) - 1} more)" if len(report) > 1 else ""
        where = f"row {first.row}, column {first.column}" + (f", {first.patient_id}" if first.patient_id else "")
        raise ValidationFailed(f"{first.message}: {first.value!r}{more}", where)
    return out


def _coerce(df: pd.DataFrame, schema: Schema, findings: _Findings | None = None) -> tuple[pd.DataFrame, _Findings]:
    out = df.copy()
    findings = findings if findings is not None else _Findings()
    for name, spec in [*schema.columns.items(), *schema.optional.items()]:
        if name not in out.columns:
            continue
        col = out[name]
        if spec.dtype == "str":
            out[name] = _to_string(col)
            continue
        num = _to_number(col)
        bad = num.isna() & _present(col)
        if spec.dtype == "Int64":
            frac = num.notna() & (np.floor(num) != num)
            bad |= frac
            num = num.where(~frac)
            out[name] = num.round().astype("Int64")
            what = "not an integer"
        else:
            out[name] = num.astype("float64")
            what = "not a number"
        rows = np.flatnonzero(bad.to_numpy())
        if len(rows):
            findings.add(rows, name, "dtype", "error", f"{what} ({spec.dtype} expected)")
    return out, findings


def _present(col: pd.Series) -> pd.Series:
    present = col.notna()
    if col.dtype == object or isinstance(col.dtype, pd.StringDtype) or col.dtype.kind in "OSU":
        present &= (col.astype(STRING_DTYPE).str.strip().fillna("") != "").fillna(False).astype(bool)
    return present


def _to_number(col: pd.Series) -> pd.Series:
    if col.dtype.kind in "iuf" or isinstance(col.dtype, (pd.Int64Dtype, pd.Float64Dtype)):
        return col.astype("float64")
    if col.dtype.kind == "b" or isinstance(col.dtype, pd.BooleanDtype):
        return col.astype("Float64").astype("float64")
    text = col.astype(STRING_DTYPE).str.strip()
    return pd.to_numeric(text.where(text != ""), errors="coerce").astype("float64")


def _to_string(col: pd.Series) -> pd.Series:
    if col.dtype.kind == "f":
        # a text column that came back numeric (e.g. site codes): 4493.0 -> "4493"
        vals = [None if pd.isna(v) else (str(int(v)) if float(v).is_integer() else repr(float(v))) for v in col]
        return pd.Series(pd.array(vals, dtype=STRING_DTYPE), index=col.index)
    if col.dtype == object:
        vals = [None if _isna(v) else (str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)) for v in col]
        s = pd.Series(pd.array(vals, dtype=STRING_DTYPE), index=col.index)
    else:
        s = col.astype(STRING_DTYPE)
    return s.mask((s.str.strip() == "").fillna(False))


# ---------------------------------------------------------------------------------------------- pandera


@dataclass(frozen=True)
class _CheckInfo:
    rule: str
    severity: str
    message: str


def _build_pandera(schema: Schema) -> tuple[pandera.DataFrameSchema, dict[tuple[str, int], _CheckInfo]]:
    import pandera.pandas as pa

    columns = {}
    infos: dict[tuple[str, int], _CheckInfo] = {}
    for c in [*schema.columns.values(), *schema.optional.values()]:
        checks: list[Any] = []

        def add(check: Any, rule: str, severity: str, message: str, _c: ColumnSpec = c) -> None:
            infos[(_c.name, len(checks))] = _CheckInfo(rule, severity, message)
            checks.append(check)

        if c.allowed is not None:
            accepted = list(c.allowed) + list(c.tolerated)
            add(pa.Check.isin(accepted), "allowed_values", "error", f"not one of {list(c.allowed)}")
        if c.tolerated:
            tolerated = list(c.tolerated)
            add(pa.Check(per_unique(functools.partial(_not_in, values=tolerated))), "tolerated_spelling", "warning",
                f"accepted spelling variant; canonical values are {list(c.allowed or [])}")
        if c.min is not None or c.max is not None:
            lo = -math.inf if c.min is None else c.min
            hi = math.inf if c.max is None else c.max
            add(pa.Check(functools.partial(_in_range, lo=lo, hi=hi)), "range", "error",
                f"outside the range [{c.min}, {c.max}]")
        if c.pattern:
            add(pa.Check(per_unique(functools.partial(_full_match, pattern=c.pattern))), "pattern", "error",
                f"does not match {c.pattern}")
        if c.format:
            add(pa.Check(per_unique(functools.partial(_format_ok, spec=c, fmt=c.format))), "format", "error",
                _format_message(c, c.format))
        if c.dtype == "str":
            add(pa.Check(per_unique(lambda u: u == u.str.strip())), "no_surrounding_whitespace", "warning",
                "text has leading or trailing whitespace")
        dtype = {"Int64": "Int64", "float64": "float64", "str": None}[c.dtype]
        columns[c.name] = pa.Column(dtype, checks, nullable=c.nullable, required=c.name in schema.columns, coerce=False)
    pandera_schema = pa.DataFrameSchema(columns, strict=False, ordered=False, name=schema.name)
    return pandera_schema, infos


def _not_in(u: pd.Series, values: list[object]) -> pd.Series:
    return ~u.isin(values)


def _in_range(s: pd.Series, lo: float, hi: float) -> pd.Series:
    return (s >= lo) & (s <= hi)


def _full_match(u: pd.Series, pattern: str) -> pd.Series:
    return u.str.fullmatch(pattern)


def per_unique(fn: Callable[[pd.Series], pd.Series]) -> Callable[[pd.Series], pd.Series]:
    """Evaluate a text check once per distinct value: most text columns have few (dates, spacings, codes).

    Missing values pass (pandera reports nullability separately).
    """

    def check(s: pd.Series) -> pd.Series:
        codes, uniques = pd.factorize(s, use_na_sentinel=True)
        if len(uniques) == 0:
            return pd.Series(True, index=s.index)
        results = fn(pd.Series(uniques).astype(STRING_DTYPE)).fillna(False).to_numpy(dtype=bool)
        return pd.Series(np.where(codes < 0, True, results[np.maximum(codes, 0)]), index=s.index)

    return check


def _format_ok(s: pd.Series, spec: ColumnSpec, fmt: str) -> pd.Series:
    """Which values are in ``fmt`` (``spec.format``), with ``spec``'s length and sign rules."""
    s = s.reset_index(drop=True)
    text = s.astype(STRING_DTYPE).str.strip()
    ok = text.str.fullmatch(_FORMAT_PATTERNS[fmt].pattern).fillna(False)
    if fmt == "date":
        ok &= pd.to_datetime(text.where(ok), format="%Y/%m/%d", errors="coerce").notna()
        return ok.fillna(False).astype(bool)
    if spec.length is not None:
        ok &= _list_lengths(text) == spec.length
    if spec.positive:
        items = text.where(ok).str.strip("[] ").str.split(",").explode()
        nums = pd.to_numeric(items, errors="coerce")
        ok &= (nums > 0).groupby(level=0).all().reindex(s.index, fill_value=False).astype(bool)
    return ok.fillna(False).astype(bool)


def _format_message(c: ColumnSpec, fmt: str) -> str:
    what = {"list_float": "a list of numbers like [0.7, 0.7]", "list_int": "a list of integers like [0, 90, 180]",
            "date": "a date yyyy/mm/dd"}[fmt]
    if c.length is not None:
        what += f" with {c.length} items"
    if c.positive:
        what += ", all > 0"
    return f"not {what}"


def _list_lengths(text: pd.Series) -> pd.Series:
    body = text.str.strip().str.strip("[]").str.strip()
    return (body.str.count(",") + 1).where(body != "", 0)


# ---------------------------------------------------------------------------------------------- rules
# Each kind returns (column to report, boolean Series: True where the row violates the rule) pairs.

RuleResult = Iterable[tuple[str, pd.Series]]


def _rule_unique(df: pd.DataFrame, p: dict[str, Any]) -> RuleResult:
    col = df[p["column"]]
    yield p["column"], col.notna() & col.duplicated(keep=False)


def _rule_pattern_by(df: pd.DataFrame, p: dict[str, Any]) -> RuleResult:
    col, key = df[p["column"]].astype(STRING_DTYPE), df[p["key"]].astype(STRING_DTYPE)
    bad = pd.Series(False, index=df.index)
    for value, pattern in p["patterns"].items():
        rows = key == value
        bad |= (rows & ~col.str.fullmatch(pattern)).fillna(False)
    yield p.get("report_column", p["column"]), bad


def _rule_any_positive(df: pd.DataFrame, p: dict[str, Any]) -> RuleResult:
    target = df[p["column"]]
    inputs = df[p["inputs"]]
    any_pos = (inputs == 1).fillna(False).any(axis=1)
    all_neg = (inputs == 0).fillna(False).all(axis=1)
    bad = (any_pos & (target != 1).fillna(True)) | (all_neg & (target != 0).fillna(True))
    yield p["column"], bad.fillna(False).astype(bool)


def _rule_combinations(df: pd.DataFrame, p: dict[str, Any]) -> RuleResult:
    col = df[p["column"]].astype(STRING_DTYPE)
    inputs = df[p["inputs"]]
    known = inputs.notna().all(axis=1) & col.notna()
    bad = pd.Series(False, index=df.index)
    for value, combos in p["allowed"].items():
        rows = (col == value).fillna(False) & known
        ok = pd.Series(False, index=df.index)
        for combo in combos:
            match = pd.Series(True, index=df.index)
            for name, expected in zip(p["inputs"], combo):
                match &= (inputs[name] == expected).fillna(False)
            ok |= match
        bad |= rows & ~ok
    yield p["column"], bad.astype(bool)


def _rule_not_greater(df: pd.DataFrame, p: dict[str, Any]) -> RuleResult:
    limit = df[p["limit"]]
    for name in p["columns"]:
        yield name, (df[name] > limit).fillna(False).astype(bool)


def _rule_list_length(df: pd.DataFrame, p: dict[str, Any]) -> RuleResult:
    codes, uniques = pd.factorize(df[p["column"]].astype(STRING_DTYPE), use_na_sentinel=True)
    text = pd.Series(uniques).astype(STRING_DTYPE)
    unique_ok = text.str.strip().str.fullmatch(r"\[[^\[\]]*\]").fillna(False).to_numpy(dtype=bool)
    unique_len = _list_lengths(text).to_numpy(dtype="float64", na_value=np.nan)
    count = df[p["count"]]
    parsable = pd.Series(np.where(codes < 0, False, unique_ok[np.maximum(codes, 0)]) if len(uniques) else False,
                         index=df.index) & count.notna()
    lengths = pd.Series(unique_len[np.maximum(codes, 0)] if len(uniques) else np.nan, index=df.index)
    offset = (lengths - count).where(parsable)
    if "allowed_offsets" in p:
        bad = parsable & ~offset.isin(p["allowed_offsets"])
    else:
        bad = parsable & offset.isin(p["flag_offsets"])
    yield p["column"], bad.fillna(False).astype(bool)


def _rule_present_with(df: pd.DataFrame, p: dict[str, Any]) -> RuleResult:
    yield p["column"], (df[p["column"]].isna() & df[p["with"]].notna()).astype(bool)


def _rule_text_prefix(df: pd.DataFrame, p: dict[str, Any]) -> RuleResult:
    """Every text column (known or extra): cells that start with one of ``prefixes``; with ``except_numbers``
    text that is just a number (``-5``) does not count. Numeric columns hold no text and are skipped."""
    import re

    prefixes = tuple(str(x) for x in p["prefixes"])
    number = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")

    def flagged(u: pd.Series) -> pd.Series:
        hit = u.str[:1].isin(prefixes)
        if p.get("except_numbers"):
            hit &= ~u.str.fullmatch(number.pattern).fillna(False)
        return hit

    for name in df.columns:
        col = df[name]
        if col.dtype == object or isinstance(col.dtype, pd.StringDtype):
            ok = per_unique(lambda u: ~flagged(u))(col.astype(STRING_DTYPE))  # missing values pass
            yield str(name), ~ok.astype(bool)


RULE_KINDS: dict[str, Callable[[pd.DataFrame, dict[str, Any]], RuleResult]] = {
    "unique": _rule_unique,
    "pattern_by": _rule_pattern_by,
    "any_positive": _rule_any_positive,
    "combinations": _rule_combinations,
    "not_greater": _rule_not_greater,
    "list_length": _rule_list_length,
    "present_with": _rule_present_with,
    "text_prefix": _rule_text_prefix,
}


def _rule_columns(rule: RuleSpec) -> set[str]:
    p = rule.params
    names = set()
    for key in ("column", "key", "limit", "count", "with"):
        if key in p:
            names.add(p[key])
    for key in ("inputs", "columns"):
        names.update(p.get(key, []))
    return names


# ---------------------------------------------------------------------------------------------- validate


def validate_frame(df: pd.DataFrame, schema: Schema | None = None) -> Report:
    """Validate a table (raw or canonical) and return every finding, errors and warnings alike."""
    schema = schema or load_schema()
    df = df.reset_index(drop=True)
    findings = _Findings()

    expected = schema.column_names()
    present = [str(c) for c in df.columns]
    for name in expected:
        if name not in present:
            findings.add(None, name, "column_missing", "error", "required column is missing")
    for name in present:
        if name not in schema.columns and name not in schema.optional:
            findings.add(None, name, "column_extra", "error", "column is not one of the 49 variables")
    dupes = sorted({c for c in present if present.count(c) > 1})
    for name in dupes:
        findings.add(None, name, "column_duplicate", "error", "column appears more than once")
    if dupes:
        return Report(len(df), findings, None, None)
    common = [c for c in expected if c in present]
    if [c for c in present if c in schema.columns] != common or any(
        present.index(o) < present.index(c) for o in present if o in schema.optional for c in common
    ):
        findings.add(None, None, "column_order", "error", "columns are not in the published order (optional ones last)")

    typed, findings = _coerce(df, schema, findings)
    _run_column_checks(schema, typed, common + [c for c in present if c in schema.optional], findings)
    for rule in schema.rules:
        if not _rule_columns(rule) <= set(common):
            continue  # a missing column is already an error; the rule cannot be evaluated
        for column, bad in RULE_KINDS[rule.kind](typed, rule.params):
            rows = np.flatnonzero(bad.to_numpy(dtype=bool))
            if len(rows):
                findings.add(rows, column, rule.id, rule.severity, rule.message)
    return Report(len(df), findings, typed, df)


def _run_column_checks(schema: Schema, typed: pd.DataFrame, columns: list[str], findings: _Findings) -> None:
    """Run the pandera schema's column checks and collect failing rows.

    The checks are the pandera ``Check`` objects of ``schema.pandera``, called directly on each column:
    ``DataFrameSchema.validate(lazy=True)`` would run the same checks but also format a text message
    for every failure case, which dominates the run time once a big table has millions of findings.
    Dtypes need no pandera check here: ``_coerce`` already put every column in its canonical dtype and
    reported each value that did not fit.
    """
    pandera_schema, infos = schema.pandera
    for name in columns:
        column = pandera_schema.columns[name]
        series = typed[name]
        if not column.nullable:
            rows = np.flatnonzero(series.isna().to_numpy())
            if len(rows):
                findings.add(rows, name, "not_null", "error", "missing value in a required column")
        for number, check in enumerate(column.checks):
            output = check(series).check_output
            failed = output.index[~output.fillna(False).to_numpy(dtype=bool)]
            if len(failed):
                info = infos[(name, number)]
                findings.add(np.sort(series.index.get_indexer(failed)), name, info.rule, info.severity, info.message)


def _patient_ids(df: pd.DataFrame) -> np.ndarray:
    if "patient_id" not in df.columns:
        return np.full(len(df), None, dtype=object)
    ids = df["patient_id"].astype(STRING_DTYPE).to_numpy(dtype=object)
    ids[pd.isna(ids)] = None
    return ids


def _isna(v: Any) -> bool:
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def _scalar(v: Any) -> Any:
    if _isna(v):
        return None
    if isinstance(v, np.generic):
        return v.item()
    return v


def _jsonable(v: Any) -> Any:
    v = _scalar(v)
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    return str(v)


def _options_text(c: ColumnSpec) -> str:
    parts = []
    if c.allowed is not None:
        parts.append(", ".join(str(a) for a in c.allowed))
    if c.min is not None or c.max is not None:
        parts.append(f"min: {c.min if c.min is not None else '-'}, max: {c.max if c.max is not None else '-'}")
    if c.format:
        parts.append({"list_float": "list of numbers", "list_int": "list of integers", "date": "date: yyyy/mm/dd"}[c.format])
    if c.unit:
        parts.append(c.unit)
    if c.nullable:
        parts.append("empty: no info available")
    return "; ".join(parts)
