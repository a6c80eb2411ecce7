"""Normalization of carried-forward tables (``mappings/normalize.yaml``): declared value rewrites, counted."""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from etl.errors import ConfigError
from etl.transform.clinical.mapping import NORMALIZE_FILE, compile_regex, config_where, load_yaml

log = logging.getLogger("etl.transform.clinical")


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
        data = load_yaml(path)
        if data.get("kind") != "normalize":
            raise ConfigError("not a normalization file (kind: normalize expected)", str(path))
        replace: dict[str, dict[str, str]] = {}
        patterns: dict[str, list[tuple[re.Pattern[str], str]]] = {}
        for col, spec in (data.get("columns") or {}).items():
            w = config_where(path, f"columns.{col}")
            if not isinstance(spec, dict) or set(spec) - {"replace", "patterns"}:
                raise ConfigError("a column takes 'replace' and/or 'patterns'", w)
            replace[col] = {str(k): str(v) for k, v in (spec.get("replace") or {}).items()}
            patterns[col] = []
            for i, p in enumerate(spec.get("patterns") or []):
                if not isinstance(p, dict) or "match" not in p or "value" not in p:
                    raise ConfigError("a pattern needs 'match' and 'value'", f"{w}.patterns[{i}]")
                patterns[col].append((compile_regex(p["match"], f"{w}.patterns[{i}]"), str(p["value"])))
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
        records: list[dict[str, Any]] = [
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
