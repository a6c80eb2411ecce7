"""Filter the clinical table: a boolean expression (`--where`) or DuckDB SQL over a view named `cases`.

Both go through DuckDB, so there is one set of semantics: missing values never match a comparison
(``her2 == 1`` excludes cases with unknown HER2), ``and``/``or``/``not``, ``in (...)``, ``is null``.
Python habits are accepted where unambiguous: ``==`` and double-quoted strings that are not column names.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

import pandas as pd

from etl.errors import EtlError
from etl.interrupts import import_whole

_DOUBLE_QUOTED = re.compile(r'"([^"]*)"')
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


_COMPARED = re.compile(r"\b([A-Za-z_][A-Za-z0-9_]*)\s*(?:==|=|!=|<>)\s*'((?:[^']|'')*)'")
_IN_LIST = re.compile(r"\b([A-Za-z_][A-Za-z0-9_]*)\s+(?:not\s+)?in\s*\(([^)]*)\)", re.IGNORECASE)
_QUOTED = re.compile(r"'((?:[^']|'')*)'")


class QueryError(EtlError):
    """The expression or SQL cannot be run on this table (a usage error: exit 2)."""

    exit_code = 2


def filter_cases(df: pd.DataFrame, where: str) -> pd.DataFrame:
    """Rows of ``df`` for which the boolean expression holds (missing compares as false)."""
    if not where.strip():
        raise QueryError("empty expression", "--where")
    expr = _DOUBLE_QUOTED.sub(lambda m: m.group(0) if m.group(1) in df.columns else "'" + m.group(1).replace("'", "''") + "'", where)
    return run_sql(df, f"SELECT * FROM cases WHERE ({expr})", where_label="--where")


def run_sql(df: pd.DataFrame, sql: str, where_label: str = "--sql") -> pd.DataFrame:
    """Run DuckDB SQL with ``df`` registered as the view ``cases``."""
    duckdb = import_whole("duckdb")

    con = duckdb.connect()
    try:
        con.register("cases", df)
        try:
            result = con.execute(sql).df()
        except duckdb.BinderException as exc:
            raise _binder_error(exc, df.columns, where_label) from exc
        except duckdb.Error as exc:
            raise QueryError(f"invalid expression: {_first_line(exc)}", where_label) from exc
    finally:
        con.close()
    return _restore_dtypes(result, df)


def literal_hints(df: pd.DataFrame, expr: str) -> list[str]:
    """A hint for each string literal compared with a text column that holds no such value but holds it in
    another case or with stray spaces (``manufacturer == 'Siemens'`` when the data says ``SIEMENS``), or a
    close spelling: an empty answer caused by a spelling should say so, not look like a finding."""
    expr = _DOUBLE_QUOTED.sub(lambda m: m.group(0) if m.group(1) in df.columns else "'" + m.group(1).replace("'", "''") + "'", expr)
    pairs = [(m.group(1), m.group(2).replace("''", "'")) for m in _COMPARED.finditer(expr)]
    for m in _IN_LIST.finditer(expr):
        pairs += [(m.group(1), q.replace("''", "'")) for q in _QUOTED.findall(m.group(2))]
    hints = []
    for column, literal in dict.fromkeys(pairs):
        if column not in df.columns:
            continue
        values = {str(v) for v in df[column].dropna().unique() if isinstance(v, str)}
        if not values or literal in values:
            continue
        key = literal.strip().casefold()
        close = sorted(v for v in values if v.strip().casefold() == key)
        if not close:
            close = difflib.get_close_matches(literal, sorted(values), n=3, cutoff=0.8)
        if close:
            hints.append(f"no {column} is {literal!r}; did you mean {', '.join(repr(v) for v in close)}?")
    return hints


def referenced_columns(expr: str, columns: Iterable[str]) -> list[str]:
    """Column names that an expression mentions, in table order (to choose what a table display shows)."""
    words = set(_IDENT.findall(_DOUBLE_QUOTED.sub("", re.sub(r"'[^']*'", "", expr))))
    return [c for c in columns if c in words]


def _binder_error(exc: Exception, columns: Iterable[str], where_label: str) -> QueryError:
    text = str(exc)
    m = re.search(r'column "([^"]+)" not found', text)
    if m:
        name = m.group(1)
        close = difflib.get_close_matches(name, list(columns), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        return QueryError(f"unknown column {name!r}{hint}", where_label)
    return QueryError(f"invalid expression: {_first_line(exc)}", where_label)


def _restore_dtypes(result: pd.DataFrame, source: pd.DataFrame) -> pd.DataFrame:
    """Give selected columns their source dtypes back (DuckDB returns nullable ints as float)."""
    for name in result.columns:
        if name in source.columns and result[name].dtype != source[name].dtype:
            try:
                result[name] = result[name].astype(source[name].dtype)
            except (TypeError, ValueError):
                pass  # a computed column that only shares the name: keep DuckDB's type
    return result


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0]
