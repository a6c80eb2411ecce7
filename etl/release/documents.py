"""Step 4 of ``release build``, the documents: data dictionary, LICENSES.md, croissant.json, provenance.json,
CHANGELOG.md (with the diff against the previous release) and, on request, report.html (the data card).

Their order matters: Croissant lists the checksums of the files written before it, the changelog diffs every
file but itself, and the data card reads the finished release. Nothing here reads the wall clock or a path of
the build machine (etl/release/machine_paths.py), so the same inputs give the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
from pathlib import Path
from typing import Any

import pandas as pd

from etl import __version__
from etl.contracts import CHANGELOG, CROISSANT, DATA_DICTIONARY, LICENSES, MANIFEST, PROVENANCE, QC
from etl.hashing import sha256_file
from etl.release.casefiles import CaseFiles, write_text_file
from etl.release.definition import ReleaseDefinition
from etl.release.inputs import ReleaseInputs
from etl.release.manifest import release_files

log = logging.getLogger("etl.release.build")


def write_documents(defn: ReleaseDefinition, inp: ReleaseInputs, files: CaseFiles, review: dict[str, Any],
                    tmp: Path, out: Path, *, report: bool, verified: bool) -> None:
    """Write the release's documents into ``tmp`` (``out``: where it will be published, never named in them)."""
    from etl.release import croissant, dictionary

    df = inp.table
    write_text_file(tmp / DATA_DICTIONARY, dictionary.data_dictionary(df, defn.release_id, defn.layout(tmp)))
    datasets = sorted(str(d) for d in df["dataset"].dropna().unique())
    counts = {str(k): int(v) for k, v in df["dataset"].value_counts().items()}
    write_text_file(tmp / LICENSES, licenses(defn, datasets, counts))
    sums = {rel: files.known.get(rel) or sha256_file(tmp / rel) for rel in release_files(tmp)}
    write_text_file(tmp / CROISSANT, croissant.dumps(croissant.croissant(defn, df, sums)))
    inputs, extra = provenance_fields(defn, inp, files, review, counts)
    write_text_file(tmp / PROVENANCE, provenance(defn, inputs, extra, out))
    write_text_file(tmp / CHANGELOG, changelog(defn, df, *previous_diff(defn, df, files, tmp)))
    if report:  # report.html, the data card (etl/report), checksummed and verified with the rest
        from etl.report.release import write_release_report

        write_release_report(tmp, verified=verified)


def provenance_fields(defn: ReleaseDefinition, inp: ReleaseInputs, files: CaseFiles, review: dict[str, Any],
                      counts: dict[str, int]) -> tuple[dict[str, Any], dict[str, Any]]:
    """provenance.json's ``inputs`` (what was read, by sha256) and the rest (cases, split, outputs, ledger)."""
    split_of = set(inp.split.assignments["patient_id"])
    staged_qc = inp.staged_qc
    inputs: dict[str, Any] = {
        "table": {"path": defn.portable(defn.table), "sha256": sha256_file(defn.table)} if defn.table else None,
        "staged": [
            {"path": defn.portable(root), "files": len(files.staged_entries.get(root, [])),
             "sha256_of_listing": staged_digest(files.staged_entries.get(root, []))}
            for root in defn.staged
        ],
        "imaging_json": sum(1 for c in inp.cases.values() if c.imaging_json is not None and c.patient_id in split_of),
        "segmentation_qc": {"path": f"{defn.portable(staged_qc.parent)}/{QC}",
                            "sha256": sha256_file(staged_qc)} if staged_qc else None,
        "caches": [defn.portable(c) for c in defn.caches],
        "previous": {"path": defn.portable(defn.previous), "release": name_of(defn.previous),
                     "sha256_of_manifest": sha256_file(defn.previous / MANIFEST)
                     if (defn.previous / MANIFEST).is_file() else None} if defn.previous else None,
        "exclusions": {"path": defn.portable(defn.exclusions), "sha256": sha256_file(defn.exclusions)}
        if defn.exclusions else None,
        "review": review,
    }
    extra = {
        "cases": {"total": len(inp.table), "by_dataset": dict(sorted(counts.items())),
                  "left_out_without_images": inp.dropped, "excluded": inp.excluded,
                  "staged_without_table_row": inp.unlisted},
        "imaging_overrides_from_staged": inp.overrides,
        "split": {"file": {"path": defn.portable(defn.split_file), "sha256": sha256_file(defn.split_file)} if defn.split_file else None,
                  "seed": defn.split.seed, "test_fraction": defn.split.test_fraction, "folds": defn.split.folds,
                  "min_stratum": defn.split.effective_min_stratum, "merged_strata": inp.split.merges},
        "outputs": {"images": files.images, "expert_masks": files.expert_masks, "automatic_masks": files.automatic_masks,
                    "patient_info_merged_from_staged": files.info_merged,
                    "segmentation_qc": "carried over from staged" if staged_qc else ("computed" if files.qc_rows else None)},
        "stage_ledger": ledger(defn),
    }
    return inputs, extra


def previous_diff(defn: ReleaseDefinition, df: pd.DataFrame, files: CaseFiles, tmp: Path) -> tuple[str | None, str | None]:
    """(Markdown diff against the previous release, its CHANGELOG.md text); (None, None) without one."""
    from etl.release.diff import diff_parts, diff_text, load_release_table
    from etl.release.manifest import read_manifest

    if defn.previous is None:
        return None, None
    prev_changelog = defn.previous / CHANGELOG
    previous_log = prev_changelog.read_text() if prev_changelog.exists() else None
    sums = {rel: files.known.get(rel) or sha256_file(tmp / rel) for rel in release_files(tmp)}
    prev = defn.previous
    if name_of(prev) == defn.release_id:
        log.warning("previous release %s has the same name and version as this one", prev)
    prev_sums = {k: v for k, v in read_manifest(prev).items() if k != CHANGELOG}
    d = diff_parts(name_of(prev), load_release_table(prev), prev_sums, defn.release_id, df, sums)
    return diff_text(d, markdown=True), previous_log


def staged_digest(entries: list[tuple[str, str]]) -> str:
    h = hashlib.sha256()
    for rel, digest in sorted(entries):
        h.update(f"{digest}  {rel}\n".encode())
    return h.hexdigest()


def ledger(defn: ReleaseDefinition) -> list[dict[str, Any]]:
    """Stage records found at the top of each staged directory (JSON / JSON lines), with their sha256; the
    records are copied as they are, and ``provenance`` makes the paths in them portable."""
    out = []
    for root in defn.staged:
        if not root.is_dir():
            continue
        for p in sorted(root.iterdir()):
            if not p.is_file() or not (p.name.endswith((".jsonl", ".json")) and any(k in p.name for k in ("ledger", "provenance", "stage"))):
                continue
            entry: dict[str, Any] = {"path": f"{defn.portable(root)}/{p.name}", "sha256": sha256_file(p)}
            if p.stat().st_size <= 1 << 20:
                try:
                    text = p.read_text()
                    entry["records"] = ([json.loads(line) for line in text.splitlines() if line.strip()]
                                        if p.name.endswith(".jsonl") else json.loads(text))
                except ValueError:
                    entry["records"] = None
            out.append(entry)
    return out


def licenses(defn: ReleaseDefinition, datasets: list[str], counts: dict[str, int]) -> str:
    raw = defn.raw
    lic = raw.get("release_license") or {}
    lines = [f"# Licences: {defn.release_id}", ""]
    if lic:
        lines += [f"The release as a whole is distributed under **{lic.get('name', '')}** "
                  f"({lic.get('url', '')}): the most restrictive licence among its source collections applies "
                  "to the combined data. Each collection keeps its own licence below; cite every collection you use.", ""]
    if raw.get("citation"):
        lines += ["## Cite this dataset", "", str(raw["citation"]).strip(), ""]
    lines += ["## Source collections", "", "| dataset | TCIA collection | cases | licence | DOI |", "| --- | --- | --- | --- | --- |"]
    missing = []
    for ds in datasets:
        c = defn.collections.get(ds)
        if not c:
            missing.append(ds)
            lines.append(f"| {ds} | (not in the release definition) | {counts.get(ds, 0)} | to be determined | |")
            continue
        lines.append(f"| {ds} | {c.get('tcia_collection', '')} | {counts.get(ds, 0)} | "
                     f"[{c.get('license', '')}]({c.get('license_url', '')}) | {c.get('doi', '')} |")
    lines.append("")
    for ds in datasets:
        c = defn.collections.get(ds)
        if not c:
            continue
        lines += [f"### {ds}: {c.get('tcia_collection', '')}", "", f"Licence: {c.get('license', '')} ({c.get('license_url', '')})", ""]
        if c.get("citation"):
            lines += [str(c["citation"]).strip(), ""]
        if c.get("checked") is False:
            lines += ["_Licence as recorded in the release definition; confirm it on the collection page before publishing._", ""]
    if missing:
        log.warning("no licence recorded for collection(s): %s", ", ".join(missing))
    return "\n".join(lines)


def changelog(defn: ReleaseDefinition, df: pd.DataFrame, diff_md: str | None, previous_log: str | None = None) -> str:
    counts = df["dataset"].value_counts().sort_index()
    split = df["split"].value_counts() if "split" in df.columns else pd.Series(dtype=int)
    lines = [f"# Changelog: {defn.release_id}", "", f"## {defn.version}", "",
             f"- {len(df)} cases: " + ", ".join(f"{k} {int(v)}" for k, v in counts.items()),
             f"- split: train {int(split.get('train', 0))}, test {int(split.get('test', 0))}, "
             f"{defn.split.folds} folds (seed {defn.split.seed})",
             f"- orientation profile: {defn.profile}", ""]
    if diff_md is None:
        lines += ["No previous release given: nothing to compare with.", ""]
    else:
        lines += [diff_md]
    if previous_log:
        # keep the history: the previous release's entries (without its title) follow
        body = previous_log.split("\n", 1)[1] if previous_log.startswith("# ") else previous_log
        lines += [body.strip("\n"), ""]
    return "\n".join(lines)


def provenance(defn: ReleaseDefinition, inputs: dict[str, Any], extra: dict[str, Any], out: Path) -> str:
    """provenance.json: inputs by sha256 and portable name. Whatever else a field carries (stage-ledger
    records, review inputs) is scrubbed of this machine's paths, so a build in another folder from the same
    inputs gives the same bytes and the release never names the curator's folders."""
    import nibabel
    import numpy
    import pyarrow

    from etl.release.machine_paths import machine_roots, scrub

    doc = {
        "tool": {"name": "mamamia-etl", "version": __version__},
        "environment": {
            "python": platform.python_version(),
            "pandas": pd.__version__,
            "pyarrow": pyarrow.__version__,
            "numpy": numpy.__version__,
            "nibabel": nibabel.__version__,
        },
        "release": {"name": defn.name, "version": defn.version, "profile": defn.profile},
        "definition_file": {"path": defn.path.name, "sha256": sha256_file(defn.path)},
        "definition": defn.effective(),
        "inputs": inputs,
        **extra,
    }
    inputs_at = [defn.table, defn.previous, defn.split_file, defn.exclusions, *defn.staged, *defn.caches]
    roots = machine_roots(defn.path.parent, out, out.parent, *inputs_at, *(p.parent for p in inputs_at if p))
    doc = scrub(json.loads(json.dumps(doc, default=str)), defn.path.parent, roots, defn.staged)
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def name_of(root: Path) -> str:
    try:
        rel = json.loads((root / PROVENANCE).read_text()).get("release") or {}
        return f"{rel['name']}-{rel['version']}"
    except (OSError, ValueError, KeyError):
        return root.name

