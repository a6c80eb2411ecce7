"""The review outputs a release carries: visual ratings (``segmentation_quality.csv``) and expert corrections
(``segmentations/corrections.parquet``), plus what the data card, Croissant and verify say about them.

Why here and not in ``build.py``: the release stage only has to call ``write_review_files`` once; where the
ratings come from, how raters are anonymized and which correction rows are still true is one concern, kept
in one module that ``verify`` checks against.

Sources (both optional; nothing is invented when they are absent):
- ratings: ``sources.ratings`` of the definition (a review database ``.sqlite`` or an export ``.csv`` /
  ``.parquet`` from ``mamamia review export``), else ``segmentation_quality.csv`` at the top of a staged
  directory. One row per case and rater (the rater's latest rating). ``anonymize_raters: true`` in the
  definition replaces rater (and expert) names by ``rater_1``, ``rater_2``... (``expert_1``...) in order of
  their first rating (import), ties by name.
- corrections: ``segmentations/corrections.parquet`` of each staged directory (``mamamia review import``);
  only the row describing the expert mask that is actually released (same sha256) is carried, so a mask
  replaced by hand after its import never ships with the old mask's statistics.
"""

from __future__ import annotations

import hashlib
import io
import logging
from pathlib import Path
from typing import Any

import pandas as pd

from etl.contracts import RATINGS
from etl.errors import ConfigError, EtlError, InputUnreadable
from etl.layout import Layout

log = logging.getLogger("etl.release.quality")

QUALITY = RATINGS
QUALITY_COLUMNS = ("patient_id", "rater", "score", "comment", "rated_at", "mask_sha256", "stale")
SCORES = ("good", "acceptable", "poor", "missed")
# released correction columns: the staged table's, without the bookkeeping of superseded imports
CORRECTION_DROP = ("current",)


# ------------------------------------------------------------------------------------------------ build


def anonymize_raters(raw: dict[str, Any]) -> bool:
    value = raw.get("anonymize_raters", False)
    if not isinstance(value, bool):
        raise ConfigError(f"anonymize_raters must be true or false, got {value!r}", "anonymize_raters")
    return value


def ratings_source(defn: Any) -> Path | None:
    """The ratings file the release exports: the definition's ``sources.ratings``, else a staged export."""
    from etl.release.definition import resolve_path

    listed = (defn.raw.get("sources") or {}).get("ratings")
    if listed:
        path = resolve_path(listed, defn.path.parent, "sources.ratings", defn.path)
        if not path.is_file():
            raise ConfigError("ratings file not found", f"{defn.path}: sources.ratings ({path})")
        return path
    return next((root / QUALITY for root in defn.staged if (root / QUALITY).is_file()), None)


def _names(frame: pd.DataFrame, who: str, when: str, prefix: str) -> dict[str, str]:
    first = frame.groupby(who)[when].min().reset_index().sort_values([when, who], kind="mergesort")
    return {str(name): f"{prefix}_{i}" for i, name in enumerate(first[who], 1)}


def quality_frame(source: Path, released: set[str], auto_sha: dict[str, str], anonymize: bool) -> pd.DataFrame:
    """One row per released case and rater, sorted; ``stale`` = the rated mask is not the released one."""
    from etl.review.store import read_ratings

    df = read_ratings(source)
    for col in QUALITY_COLUMNS[:-1]:
        if col not in df.columns:
            df[col] = pd.NA
    df = df[df["patient_id"].astype(str).isin(released)].copy()
    if anonymize and len(df):
        names = _names(df.assign(rated_at=df["rated_at"].fillna("")), "rater", "rated_at", "rater")
        df["rater"] = df["rater"].astype(str).map(names)
    sha = df["mask_sha256"].astype("string")
    current = df["patient_id"].astype(str).map(auto_sha)
    df["stale"] = [None if pd.isna(s) or not str(s) or not isinstance(c, str) else str(s != c).lower()
                   for s, c in zip(sha, current)]
    df = df[list(QUALITY_COLUMNS)].astype("string")
    return df.sort_values(["patient_id", "rater"], kind="mergesort", ignore_index=True)


def corrections_frame(staged: list[Path], layouts: list[Any], released_expert_sha: dict[str, str],
                      anonymize: bool) -> pd.DataFrame | None:
    """Current correction rows of the released expert masks, from every staged directory (first wins)."""
    from etl.review.corrections import COLUMNS, corrections_path, current_corrections, read_corrections

    frames = []
    for layout in layouts:
        path = corrections_path(layout)
        if path.is_file():
            frames.append(current_corrections(read_corrections(path)))
    if not frames:
        return None
    df = pd.concat(frames, ignore_index=True).drop_duplicates("patient_id", keep="first")
    sha = df["patient_id"].astype(str).map(released_expert_sha)
    stale = df[sha.notna() & (sha != df["expert_sha256"])]
    for pid in stale["patient_id"]:
        log.warning("%s: expert mask differs from the one its correction was recorded for; correction row not "
                    "released (re-import the mask to record it)", pid)
    df = df[sha.notna() & (sha == df["expert_sha256"])].copy()
    if anonymize and len(df):
        names = _names(df, "expert", "imported_at", "expert")
        df["expert"] = df["expert"].astype(str).map(names).astype("string")
    cols = [c for c in COLUMNS if c not in CORRECTION_DROP]
    return df[cols].sort_values("patient_id", kind="mergesort", ignore_index=True)


def _parquet_bytes(df: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    df.to_parquet(buf, index=False, engine="pyarrow", compression="zstd")
    return buf.getvalue()


def write_review_files(defn: Any, df: pd.DataFrame, tmp: Path, known: dict[str, str]) -> dict[str, Any]:
    """Write the ratings and corrections of the released cases into the release being built (``tmp``);
    returns what provenance records about them (input files and their sha256, row counts)."""
    from etl.hashing import sha256_file

    target = Layout.from_definition(tmp, defn.path)
    ids = set(df["patient_id"].astype(str))
    digests = {kind: {pid: known.get(getattr(target, f"{kind}_mask")(pid).relative_to(tmp).as_posix()) for pid in ids}
               for kind in ("expert", "automatic")}
    expert_sha = {p: s for p, s in digests["expert"].items() if s}
    auto_sha = {p: s for p, s in digests["automatic"].items() if s}
    anonymize = anonymize_raters(defn.raw)
    out: dict[str, Any] = {"anonymize_raters": anonymize, "ratings": None, "corrections": None}

    source = ratings_source(defn)
    if source is not None:
        try:
            q = quality_frame(source, ids, auto_sha, anonymize)
        except EtlError:
            raise
        except Exception as exc:  # a damaged export: name it instead of a traceback
            raise InputUnreadable(f"ratings unreadable: {str(exc)[:160]}", str(source)) from exc
        text = q.to_csv(index=False, lineterminator="\n")
        (tmp / QUALITY).write_text(text, encoding="utf-8")
        out["ratings"] = {"path": str(source), "sha256": sha256_file(source), "rows": len(q),
                          "cases": int(q["patient_id"].nunique()), "stale": int((q["stale"] == "true").sum())}
    layouts = [Layout.from_definition(root, defn.path) for root in defn.staged]
    corr = corrections_frame(defn.staged, layouts, expert_sha, anonymize)
    if corr is not None:
        data = _parquet_bytes(corr)
        path = target.corrections()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        out["corrections"] = {"rows": len(corr), "sha256": hashlib.sha256(data).hexdigest(),
                              "staged": [str(p) for p, lay in zip(defn.staged, layouts) if lay.corrections().is_file()]}
    return out


# ------------------------------------------------------------------------------------------------ card


def corrections_name(layout: Layout) -> str:
    """Root-relative name of the corrections table (``segmentations/corrections.parquet`` in v1)."""
    return layout.corrections().relative_to(layout.root).as_posix()


def dictionary_rows(layout: Layout) -> list[str]:
    """Rows of the data dictionary's file table."""
    return [
        f"| `{QUALITY}` | visual rating of each automatic mask, one row per case and rater (the rater's latest): "
        "`patient_id`, `rater` (`rater_1`... when the definition anonymizes raters), `score` "
        "(good, acceptable, poor, missed), `comment`, `rated_at` (UTC), `mask_sha256` (the mask that was rated), "
        "`stale` (true when the released automatic mask is not the one that was rated) |",
        f"| `{corrections_name(layout)}` | per expert-corrected case: `expert` (`expert_1`... when anonymized), `imported_at` "
        "(UTC), `version` (1 = first expert mask of the case), `automatic_sha256` and `expert_sha256` (the two "
        "released masks), `reoriented`, `label_values`, `no_lesion`, `automatic_cm3`, `expert_cm3`, `added_cm3` "
        "(in the expert mask only) and `removed_cm3` (in the automatic mask only), and `dice`, `hd95_mm`, "
        "`msd_mm` of the automatic mask against the expert mask (mm), `quality` (latest visual rating) |",
    ]


def croissant_parts(sums: dict[str, str], layout: Layout) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """FileObjects and RecordSets for the review files present in the release."""
    files: list[dict[str, Any]] = []
    records: list[dict[str, Any]] = []
    specs = (
        (QUALITY, "text/csv", "Visual ratings of the automatic masks, one row per case and rater.",
         "segmentation_quality", (("patient_id", "sc:Text"), ("rater", "sc:Text"), ("score", "sc:Text"),
                                  ("comment", "sc:Text"), ("rated_at", "sc:Text"), ("mask_sha256", "sc:Text"),
                                  ("stale", "sc:Text"))),
        (corrections_name(layout), "application/x-parquet", "Expert corrections of the automatic masks: volumes added and "
         "removed (cm3), Dice, HD95 and MSD (mm) between automatic and expert mask.",
         "corrections", (("patient_id", "sc:Text"), ("expert", "sc:Text"), ("added_cm3", "sc:Float"),
                         ("removed_cm3", "sc:Float"), ("dice", "sc:Float"), ("hd95_mm", "sc:Float"),
                         ("msd_mm", "sc:Float"), ("quality", "sc:Text"))),
    )
    for rel, fmt, desc, rs, fields in specs:
        if rel not in sums:
            continue
        files.append({"@type": "cr:FileObject", "@id": rel, "name": rel, "description": desc, "contentUrl": rel,
                      "encodingFormat": fmt, "sha256": sums[rel]})
        records.append({"@type": "cr:RecordSet", "@id": rs, "name": rs, "description": desc,
                        "field": [{"@type": "cr:Field", "@id": f"{rs}/{name}", "name": name, "dataType": dtype,
                                   "source": {"fileObject": {"@id": rel}, "extract": {"column": name}}}
                                  for name, dtype in fields]})
    return files, records


# ------------------------------------------------------------------------------------------------ verify


def check_review_files(root: Path, layout: Layout, df: pd.DataFrame) -> list[Any]:
    """Ratings and corrections name table cases, use the four scores, and describe the released masks."""
    from etl.hashing import sha256_file
    from etl.release.verify import Problem

    out: list[Problem] = []
    ids = set(df["patient_id"].astype(str))
    qpath = root / QUALITY
    if qpath.exists():
        try:
            q = pd.read_csv(qpath, dtype=str, keep_default_na=False)
        except Exception as exc:
            return [Problem("review", QUALITY, f"unreadable: {str(exc)[:120]}")]
        missing = [c for c in ("patient_id", "rater", "score") if c not in q.columns]
        if missing:
            out.append(Problem("review", QUALITY, f"lacks column(s) {', '.join(missing)}"))
        else:
            for i, (pid, score) in enumerate(zip(q["patient_id"], q["score"])):
                if pid not in ids:
                    out.append(Problem("review", f"{QUALITY} row {i} ({pid})", "rating of a case not in the table"))
                if score not in SCORES:
                    out.append(Problem("review", f"{QUALITY} row {i} ({pid})",
                                       f"score must be one of {', '.join(SCORES)}, got {score!r}"))
            if q.duplicated(["patient_id", "rater"]).any():
                out.append(Problem("review", QUALITY, "a case has two rows for one rater"))
    cname = corrections_name(layout)
    cpath = root / cname
    if cpath.exists():
        try:
            c = pd.read_parquet(cpath)
        except Exception as exc:
            return out + [Problem("review", cname, f"unreadable: {str(exc)[:120]}")]
        for pid, sha in zip(c.get("patient_id", []), c.get("expert_sha256", [])):
            mask = layout.expert_mask(str(pid))
            where = f"{cname} ({pid})"
            if str(pid) not in ids:
                out.append(Problem("review", where, "correction of a case not in the table"))
            elif not mask.exists():
                out.append(Problem("review", where, f"no expert mask {mask.relative_to(root).as_posix()}"))
            elif sha256_file(mask) != sha:
                out.append(Problem("review", where, "expert mask differs from the one the correction describes"))
    return out


# ------------------------------------------------------------------------------------------------ diff


def masks_diff(sums_a: dict[str, str], sums_b: dict[str, str], templates: dict[str, str] | None = None) -> dict[str, Any]:
    """Per mask kind, the cases whose mask was added, removed or changed (from the SHA256SUMS entries)."""
    import re

    if templates is None:
        templates = Layout.from_definition(Path(".")).templates
    out: dict[str, Any] = {}
    for kind in ("expert", "automatic"):
        tpl = templates[f"{kind}_mask"]
        pattern = re.compile("^" + re.escape(tpl).replace(re.escape("{patient_id}"), "(?P<id>[^/]+)")
                             .replace(re.escape("{PATIENT_ID}"), "(?P<ID>[^/]+)") + "$")

        def ids(sums: dict[str, str]) -> dict[str, str]:
            found = {}
            for rel, digest in sums.items():
                m = pattern.match(rel)
                if m:
                    found[(m.groupdict().get("ID") or m.groupdict().get("id") or "").upper()] = digest
            return found

        a, b = ids(sums_a), ids(sums_b)
        out[kind] = {"added": sorted(set(b) - set(a)), "removed": sorted(set(a) - set(b)),
                     "changed": sorted(p for p in set(a) & set(b) if a[p] != b[p])}
    return out


def masks_diff_lines(masks: dict[str, Any], bullet: str) -> list[str]:
    lines = []
    for kind, d in masks.items():
        parts = []
        for what in ("added", "removed", "changed"):
            ids = d[what]
            parts.append(f"{len(ids)} {what}" + (f" ({', '.join(ids[:10])}{', ...' if len(ids) > 10 else ''})" if ids else ""))
        lines.append(f"{bullet}{kind} masks: " + ", ".join(parts))
    return lines
