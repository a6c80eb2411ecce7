"""What changed between two releases: cases, variable values (counts with examples) and files.

Tables are compared on the canonical form keyed by ``patient_id`` (missing equals missing; floats equal
within 1e-9 relative); files by their SHA256SUMS entries, so no image is re-read.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from etl.contracts import PROVENANCE, TABLE
from etl.errors import InputUnreadable
from etl.release.manifest import read_manifest
from etl.release.patient_info import jsonable
from etl.types import StrPath

MAX_EXAMPLES = 3


def same_value(a: Any, b: Any) -> bool:
    na_a = a is None or a is pd.NA or (isinstance(a, float) and math.isnan(a))
    na_b = b is None or b is pd.NA or (isinstance(b, float) and math.isnan(b))
    if na_a or na_b:
        return na_a and na_b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    return str(a) == str(b)


def table_diff(a: pd.DataFrame, b: pd.DataFrame) -> dict[str, Any]:
    ida = a["patient_id"].astype(str)
    idb = b["patient_id"].astype(str)
    added = sorted(set(idb) - set(ida))
    removed = sorted(set(ida) - set(idb))
    common = sorted(set(ida) & set(idb))
    a_idx = a.assign(_pid=ida.values).set_index("_pid")
    b_idx = b.assign(_pid=idb.values).set_index("_pid")
    variables: dict[str, Any] = {}
    columns = [c for c in b.columns if c in a.columns and c != "patient_id"]
    for col in columns:
        va = a_idx.loc[common, col].tolist() if common else []
        vb = b_idx.loc[common, col].tolist() if common else []
        changed = [(pid, x, y) for pid, x, y in zip(common, va, vb) if not same_value(x, y)]
        if changed:
            variables[col] = {
                "changed": len(changed),
                "examples": [{"patient_id": pid, "old": jsonable(x), "new": jsonable(y)} for pid, x, y in changed[:MAX_EXAMPLES]],
            }
    return {
        "cases_added": added,
        "cases_removed": removed,
        "cases_common": len(common),
        "variables": variables,
        "columns_added": [c for c in b.columns if c not in a.columns],
        "columns_removed": [c for c in a.columns if c not in b.columns],
    }


def files_diff(sums_a: dict[str, str], sums_b: dict[str, str]) -> dict[str, list[str]]:
    return {
        "added": sorted(set(sums_b) - set(sums_a)),
        "removed": sorted(set(sums_a) - set(sums_b)),
        "changed": sorted(p for p in set(sums_a) & set(sums_b) if sums_a[p] != sums_b[p]),
    }


def _release_name(root: Path) -> str:
    try:
        prov = json.loads((root / PROVENANCE).read_text())
        rel = prov.get("release") or {}
        return f"{rel.get('name')}-{rel.get('version')}"
    except (OSError, ValueError):
        return root.name


def load_release_table(root: Path) -> pd.DataFrame:
    from etl.release.tableio import read_table

    path = Path(root) / TABLE
    if not path.exists():
        raise InputUnreadable("not a release: no clinical_and_imaging_info.parquet", str(root))
    return read_table(path)


def diff_parts(a_name: str, a_table: pd.DataFrame, a_sums: dict[str, str],
               b_name: str, b_table: pd.DataFrame, b_sums: dict[str, str]) -> dict[str, Any]:
    from etl.release.quality import masks_diff

    return {"a": a_name, "b": b_name, **table_diff(a_table, b_table), "files": files_diff(a_sums, b_sums),
            "masks": masks_diff(a_sums, b_sums)}


def diff_releases(a: StrPath, b: StrPath) -> dict[str, Any]:
    a, b = Path(a), Path(b)
    return diff_parts(_release_name(a), load_release_table(a), read_manifest(a),
                      _release_name(b), load_release_table(b), read_manifest(b))


def _fmt(v: Any) -> str:
    return "(missing)" if v is None else repr(v)


def diff_text(d: dict[str, Any], markdown: bool = False) -> str:
    """Human-readable report (plain text, or Markdown for CHANGELOG.md)."""
    b = "- " if markdown else "  "
    lines = [f"{'## ' if markdown else ''}Changes from {d['a']} to {d['b']}", ""]
    lines.append(f"{b}cases added: {len(d['cases_added'])}" + (f" ({', '.join(d['cases_added'][:20])}"
                 f"{', ...' if len(d['cases_added']) > 20 else ''})" if d["cases_added"] else ""))
    lines.append(f"{b}cases removed: {len(d['cases_removed'])}" + (f" ({', '.join(d['cases_removed'][:20])}"
                 f"{', ...' if len(d['cases_removed']) > 20 else ''})" if d["cases_removed"] else ""))
    lines.append(f"{b}cases in both: {d['cases_common']}")
    for key in ("columns_added", "columns_removed"):
        if d.get(key):
            lines.append(f"{b}{key.replace('_', ' ')}: {', '.join(d[key])}")
    if d["variables"]:
        lines.append(f"{b}variables changed (cases in both):")
        for col, info in d["variables"].items():
            ex = "; ".join(f"{e['patient_id']}: {_fmt(e['old'])} -> {_fmt(e['new'])}" for e in info["examples"])
            lines.append(f"{'  ' + b}{col}: {info['changed']} (e.g. {ex})")
    else:
        lines.append(f"{b}variables changed: none")
    if d.get("masks"):
        from etl.release.quality import masks_diff_lines

        lines += masks_diff_lines(d["masks"], b)
    f = d["files"]
    lines.append(f"{b}files: {len(f['added'])} added, {len(f['removed'])} removed, {len(f['changed'])} changed")
    for kind in ("added", "removed", "changed"):
        for rel in f[kind][:50]:
            lines.append(f"{'  ' + b}{kind}: {rel}")
        if len(f[kind]) > 50:
            lines.append(f"{'  ' + b}... and {len(f[kind]) - 50} more {kind}")
    return "\n".join(lines) + "\n"


def diff_json(d: dict[str, Any]) -> str:
    return json.dumps(d, indent=2, ensure_ascii=False) + "\n"
