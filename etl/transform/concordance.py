"""How far a built table agrees with a reference table, per collection and variable.

Rows are matched by ``patient_id`` within each collection. A value pair counts as *compared* when both sides
have a value; numbers agree when equal within 1e-6 (relative 1e-9), text when identical after the same
normalization (``mappings/normalize.yaml``) is applied to both sides, so spelling variants the release
deliberately fixes (``hawaian``, trailing spaces) do not count as disagreements. Values present on one side
only are counted separately. Disagreements listed under ``known_discrepancies`` in a collection's mapping
file are marked with the reason recorded there.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from etl.errors import ValidationFailed
from etl.transform.clinical import CollectionMapping, Normalizer

SKIP = ("patient_id", "dataset")


@dataclass
class VariableConcordance:
    variable: str
    mapped: bool
    compared: int = 0
    agreeing: int = 0
    only_table: int = 0
    only_reference: int = 0
    disagreements: list[dict[str, Any]] = field(default_factory=list)
    n_disagreements: int = 0

    @property
    def rate(self) -> float | None:
        return self.agreeing / self.compared if self.compared else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "mapped": self.mapped,
            "compared": self.compared,
            "agreeing": self.agreeing,
            "rate": self.rate,
            "only_table": self.only_table,
            "only_reference": self.only_reference,
            "disagreements": self.n_disagreements,
            "first_disagreements": self.disagreements,
        }


@dataclass
class CollectionConcordance:
    dataset: str
    rows_table: int
    rows_reference: int
    rows_matched: int
    variables: dict[str, VariableConcordance]

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": {"table": self.rows_table, "reference": self.rows_reference, "matched": self.rows_matched},
            "variables": {k: v.to_dict() for k, v in self.variables.items()},
        }


@dataclass
class ConcordanceReport:
    collections: dict[str, CollectionConcordance]
    normalized: bool

    def to_dict(self) -> dict[str, Any]:
        return {"normalized": self.normalized, "collections": {k: v.to_dict() for k, v in self.collections.items()}}

    def lowest_mapped(self) -> list[tuple[str, str, float]]:
        """(collection, variable, rate) of every mapped variable with values compared, lowest rate first."""
        out = [
            (ds, name, v.rate)
            for ds, c in self.collections.items()
            for name, v in c.variables.items()
            if v.mapped and v.rate is not None
        ]
        return sorted(out, key=lambda t: t[2])


def _present(v: Any) -> bool:
    if v is None or v is pd.NA:
        return False
    try:
        return not pd.isna(v)
    except (TypeError, ValueError):
        return True


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, str) or isinstance(b, str):
        return str(a) == str(b)
    try:
        fa, fb = float(a), float(b)
    except (TypeError, ValueError):
        return a == b
    return math.isclose(fa, fb, rel_tol=1e-9, abs_tol=1e-6)


def _plain(v: Any) -> Any:
    if not _present(v):
        return None
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


def concordance(
    table: pd.DataFrame,
    reference: pd.DataFrame,
    mappings: Mapping[str, CollectionMapping] | None = None,
    normalizer: Normalizer | None = None,
    max_examples: int = 5,
) -> ConcordanceReport:
    """Compare ``table`` against ``reference``; ``mappings`` marks source-mapped variables and known discrepancies."""
    mappings = mappings or {}
    if normalizer is not None:
        table, _ = normalizer.apply(table)
        reference, _ = normalizer.apply(reference)
    for name, df in (("table", table), ("reference", reference)):
        missing = [c for c in SKIP if c not in df.columns]
        if missing:
            raise ValidationFailed(f"the {name} has no column(s) {', '.join(missing)}", "concordance")
    variables = [c for c in table.columns if c in reference.columns and c not in SKIP]
    out: dict[str, CollectionConcordance] = {}
    datasets = list(dict.fromkeys(list(table["dataset"].dropna()) + list(reference["dataset"].dropna())))
    for ds in datasets:
        t = table[table["dataset"] == ds].drop_duplicates("patient_id").set_index("patient_id")
        r = reference[reference["dataset"] == ds].drop_duplicates("patient_id").set_index("patient_id")
        common = [p for p in t.index if p in r.index]
        m = mappings.get(str(ds))
        known = {
            (str(k.get("variable")), str(k.get("patient_id"))): str(k.get("reason", "")).strip()
            for k in (m.known_discrepancies if m else [])
        }
        per_var: dict[str, VariableConcordance] = {}
        for var in variables:
            vc = VariableConcordance(var, mapped=bool(m and var in m.rules))
            tv = t.loc[common, var].tolist()
            rv = r.loc[common, var].tolist()
            for pid, a, b in zip(common, tv, rv):
                pa, pb = _present(a), _present(b)
                if pa and pb:
                    vc.compared += 1
                    if _same(a, b):
                        vc.agreeing += 1
                    else:
                        vc.n_disagreements += 1
                        if len(vc.disagreements) < max_examples:
                            d = {"patient_id": pid, "table": _plain(a), "reference": _plain(b)}
                            if (var, pid) in known:
                                d["known"] = known[(var, pid)]
                            vc.disagreements.append(d)
                elif pa:
                    vc.only_table += 1
                elif pb:
                    vc.only_reference += 1
            per_var[var] = vc
        out[str(ds)] = CollectionConcordance(str(ds), len(t), len(r), len(common), per_var)
    return ConcordanceReport(out, normalized=normalizer is not None)


def format_text(report: ConcordanceReport, only_mapped: bool = False) -> str:
    """Human-readable report: one block per collection, one line per variable with anything to say."""
    lines: list[str] = []
    for ds, c in report.collections.items():
        lines.append(f"{ds}: {c.rows_matched} matched rows (table {c.rows_table}, reference {c.rows_reference})")
        lines.append(f"  {'variable':<24} {'src':>3} {'compared':>8} {'agree':>6} {'rate':>8} {'only tbl':>8} {'only ref':>8}  first disagreements")
        for name, v in c.variables.items():
            if only_mapped and not v.mapped:
                continue
            if not (v.compared or v.only_table or v.only_reference):
                continue
            rate = f"{100 * v.rate:7.2f}%" if v.rate is not None else "       -"
            ex = "; ".join(
                f"{d['patient_id']} {d['table']!r} vs {d['reference']!r}" + (" (known)" if "known" in d else "")
                for d in v.disagreements[:3]
            )
            lines.append(
                f"  {name:<24} {'yes' if v.mapped else '':>3} {v.compared:>8} {v.agreeing:>6} {rate} "
                f"{v.only_table:>8} {v.only_reference:>8}  {ex}"
            )
        lines.append("")
    lowest = report.lowest_mapped()
    if lowest:
        low_ds, low_name, low_rate = lowest[0]
        lines.append(f"lowest rate of a source-mapped variable: {100 * low_rate:.2f}% ({low_ds} {low_name})")
    return "\n".join(lines).rstrip() + "\n"
