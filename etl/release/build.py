"""`release build`: staged directories + harmonized table -> a versioned, checksummed release directory.

Order of work (each step reads only declared inputs):
1. read the table; keep the rows to release (``cases: table`` = all rows, each must have images;
   ``cases: staged`` = rows whose images are staged, the rest reported);
2. find each case's files in the staged directories (first directory that has phase 0000 wins; masks
   and the imaging JSON are looked up in every staged directory, in order);
3. staged ``imaging/<id>.imaging.json`` values replace the table's imaging columns (they describe the
   files actually shipped); every changed cell is counted in provenance;
4. refuse to build if a case's phase count differs from ``num_phases`` (every problem listed);
5. split, then write everything into ``<out>.partial/``: NIfTIs copied byte for byte, per-case JSON,
   tables, QC, data card files, SHA256SUMS last; verify the partial directory; rename it into place.
Nothing in the content depends on the wall clock or on file-system order, so the same inputs give
byte-identical files.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from etl import __version__
from etl.errors import ConfigError, InputUnreadable, ValidationFailed
from etl.layout import Layout
from etl.release.definition import ReleaseDefinition, check_collections
from etl.release.manifest import MANIFEST, release_files, sha256_file

log = logging.getLogger("etl.release.build")

TABLE = "clinical_and_imaging_info.parquet"
XLSX = "clinical_and_imaging_info.xlsx"
SPLITS = "train_test_splits.csv"
QC = "segmentation_qc.parquet"
_CHUNK = 1 << 20
MAX_LISTED = 20


@dataclass
class StagedCase:
    patient_id: str
    images: list[Path]
    expert: Path | None
    automatic: Path | None
    imaging_json: Path | None
    root: Path
    patient_info: Path | None = None


@dataclass
class BuildResult:
    path: Path
    cases: int
    images: int
    expert_masks: int
    automatic_masks: int
    size_bytes: int
    files: int
    dropped: list[str] = field(default_factory=list)
    imaging_overrides: dict[str, int] = field(default_factory=dict)
    merged_strata: dict[str, str] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------ inputs


def _find_case(pid: str, layouts: list[Layout]) -> StagedCase | None:
    images: list[Path] = []
    root = None
    for lay in layouts:
        found = lay.images(pid)
        if found:
            images, root = found, lay.root
            break
    if root is None:
        return None

    def first(getter: str) -> Path | None:
        for lay in layouts:
            p = getattr(lay, getter)(pid)
            if p.exists():
                return p
        return None

    return StagedCase(pid, images, first("expert_mask"), first("automatic_mask"), first("imaging_json"), root,
                      first("patient_info"))


def _staged_not_in_table(layouts: list[Layout], ids: set[str]) -> list[str]:
    """Case folders of the image template (``images/{PATIENT_ID}``) that no table row names."""
    found: set[str] = set()
    for lay in layouts:
        folder = lay.image("X", 0).parent.parent  # the directory holding one folder per case
        if folder.is_dir() and "{PATIENT_ID}" in lay.templates["image"]:
            found |= {p.name for p in folder.iterdir() if p.is_dir()}
    return sorted(found - ids)


def _apply_imaging_json(df: pd.DataFrame, cases: dict[str, StagedCase]) -> tuple[pd.DataFrame, dict[str, int]]:
    """Staged imaging values win over the table's; returns the frame and changed-cell counts per column."""
    from etl.release.diff import same_value
    from etl.release.tableio import coerce
    from etl.tables import format_list
    from etl.transform.table import MANIFEST_OWNED  # ids come from the manifest, never from a converter
    from etl.validate.schema import imaging_columns, load_schema

    formats = load_schema().formats()
    imaging = set(imaging_columns())
    out = df.copy()
    for col in imaging:
        if col in out.columns:
            out[col] = out[col].astype(object)
    changed: dict[str, int] = {}
    pos = {pid: i for i, pid in enumerate(out["patient_id"].astype(str))}
    for pid, case in sorted(cases.items()):
        if case.imaging_json is None:
            continue
        try:
            values = json.loads(case.imaging_json.read_text())
        except (OSError, ValueError) as exc:
            raise InputUnreadable(f"imaging JSON unreadable: {exc}", str(case.imaging_json)) from exc
        if not isinstance(values, dict):
            raise InputUnreadable("imaging JSON must be an object", str(case.imaging_json))
        for col, value in sorted(values.items()):
            if col not in imaging or col in MANIFEST_OWNED or col not in out.columns or value is None:
                continue
            if isinstance(value, list) and col in formats:
                value = format_list(value, formats[col])
            i = pos[pid]
            old = out.at[i, col]
            if not same_value(old, value) and not same_value(str(old), str(value)):
                changed[col] = changed.get(col, 0) + 1
            out.at[i, col] = value
    return coerce(out), dict(sorted(changed.items()))


def _check_cases(df: pd.DataFrame, cases: dict[str, StagedCase]) -> None:
    problems = []
    for pid, n in zip(df["patient_id"].astype(str), df["num_phases"]):
        case = cases.get(pid)
        if case is None:
            problems.append((pid, "no staged images"))
        elif n is pd.NA or pd.isna(n):
            problems.append((pid, f"num_phases missing ({len(case.images)} phase files staged)"))
        elif len(case.images) != int(n):
            problems.append((pid, f"{len(case.images)} phase file(s) staged but num_phases is {int(n)}"))
    if problems:
        listed = "; ".join(f"{pid}: {why}" for pid, why in problems[:MAX_LISTED])
        more = f" (and {len(problems) - MAX_LISTED} more)" if len(problems) > MAX_LISTED else ""
        for pid, why in problems:
            log.error("%s: %s", pid, why)
        hint = ("; use `cases: staged` (or --only-staged) to release only staged cases"
                if any(why == "no staged images" for _, why in problems) else "")
        raise ValidationFailed(f"{len(problems)} case(s) cannot be released: {listed}{more}{hint}", problems[0][0])


def _check_schema(df: pd.DataFrame, table: Path) -> None:
    """Schema errors stop the build before anything is copied (verify would reject the release anyway)."""
    from etl.release.tableio import validate

    errors = validate(df).errors
    if errors:
        for v in errors:
            log.error("%s", v.describe())
        first = errors[0]
        raise ValidationFailed(f"table breaks the schema: {len(errors)} error(s), first: {first.message} "
                               f"(value {first.value!r})", f"{table}: row {first.row}, column {first.column}")


# ------------------------------------------------------------------------------------------------ writing


def _copy(src: Path, dst: Path, link: bool) -> str:
    """Byte-for-byte copy (or hard link) returning the sha256 of the bytes."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if link:
        try:
            os.link(src, dst)
            return sha256_file(dst)
        except OSError:
            pass  # other file system: fall back to copying
    h = hashlib.sha256()
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        while chunk := fin.read(_CHUNK):
            h.update(chunk)
            fout.write(chunk)
    return h.hexdigest()


def _text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _staged_digest(entries: list[tuple[str, str]]) -> str:
    h = hashlib.sha256()
    for rel, digest in sorted(entries):
        h.update(f"{digest}  {rel}\n".encode())
    return h.hexdigest()


def _ledger(defn: ReleaseDefinition) -> list[dict[str, Any]]:
    """Stage records found at the top of each staged directory (JSON / JSON lines), with their sha256; the
    records are copied as they are, and ``_provenance`` makes the paths in them portable."""
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


def _licenses(defn: ReleaseDefinition, datasets: list[str], counts: dict[str, int]) -> str:
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


def _changelog(defn: ReleaseDefinition, df: pd.DataFrame, diff_md: str | None, previous_log: str | None = None) -> str:
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


def _provenance(defn: ReleaseDefinition, inputs: dict[str, Any], extra: dict[str, Any], out: Path) -> str:
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


# ------------------------------------------------------------------------------------------------ build


def build_release(defn: ReleaseDefinition, out: str | Path, *, link: bool = False, verify: bool = True,
                  report: bool = False) -> BuildResult:
    """Build the release ``out`` from a definition (see the module docstring for the steps)."""
    import nibabel as nib

    from etl.atomic import atomic_dir
    from etl.progress import track
    from etl.release import croissant, dictionary, patient_info, qc
    from etl.release.diff import diff_parts, diff_text, load_release_table
    from etl.release.manifest import read_manifest, write_manifest
    from etl.release.tableio import read_table, write_table
    from etl.split import fixed_split, make_split, split_csv_text
    from etl.validate.schema import imaging_columns

    out = Path(out).resolve()
    _check_out(out, defn)
    if defn.table is None:
        raise ConfigError("no table given (sources.table or --table)", str(defn.path))
    for root in defn.staged:
        if not root.is_dir():
            raise InputUnreadable("staged directory not found", str(root))
    if defn.previous is not None and not (defn.previous / TABLE).exists():
        raise InputUnreadable("previous release not found (no clinical_and_imaging_info.parquet)", str(defn.previous))

    df = read_table(defn.table)
    for col in ("patient_id", "dataset", "num_phases"):
        if col not in df.columns:
            raise ValidationFailed(f"table lacks column {col}", str(defn.table))
    df = df.drop(columns=[c for c in ("split",) if c in df.columns])
    df["patient_id"] = df["patient_id"].astype("string").str.strip()
    df, excluded = _apply_exclusions(df, defn)
    df = df.sort_values("patient_id", kind="mergesort").reset_index(drop=True)

    layouts = [Layout.from_definition(root, defn.path) for root in defn.staged]
    cases: dict[str, StagedCase] = {}
    for pid in df["patient_id"].astype(str):
        found = _find_case(pid, layouts)
        if found is not None:
            cases[pid] = found
    unlisted = _staged_not_in_table(layouts, set(df["patient_id"].astype(str)))
    if unlisted:
        log.warning("%d staged case folder(s) have no table row and are not released (first: %s)", len(unlisted), unlisted[0])
    dropped: list[str] = []
    if defn.cases == "staged":
        dropped = [pid for pid in df["patient_id"].astype(str) if pid not in cases]
        df = df[df["patient_id"].isin(list(cases))].reset_index(drop=True)
        if dropped:
            log.info("cases: staged -> %d table row(s) without staged images left out (first: %s)", len(dropped), dropped[0])
    if df.empty:
        raise ValidationFailed("no case to release (no table row has staged images)", str(defn.staged[0]))
    check_collections(defn, sorted(str(d) for d in df["dataset"].dropna().unique()))
    overrides: dict[str, int] = {}
    if defn.imaging_from_staged:
        df, overrides = _apply_imaging_json(df, cases)
    _check_cases(df, cases)
    _check_schema(df, defn.table)

    try:
        result = fixed_split(df, defn.split_file, defn.split) if defn.split_file else make_split(df, defn.split)
    except ValidationFailed as exc:
        if not (exc.where or "").startswith("split."):
            raise
        raise ValidationFailed(exc.what.replace("(--folds)", "(split.folds)"), f"{defn.path}: {exc.where}") from exc
    split_of = dict(zip(result.assignments["patient_id"], result.assignments["split"]))
    df["split"] = pd.array([split_of[p] for p in df["patient_id"].astype(str)], dtype="string")

    staged_entries: dict[Path, list[tuple[str, str]]] = {root: [] for root in defn.staged}
    known: dict[str, str] = {}
    img_cols = imaging_columns()
    n_images = n_expert = n_auto = n_info = 0
    qc_rows: list[dict[str, Any]] = []
    staged_qc = next((r / QC for r in defn.staged if (r / QC).exists()), None)
    rows = df.to_dict("records")

    with atomic_dir(out) as tmp:
        target = Layout.from_definition(tmp, defn.path)
        for row in track(rows, "release: cases", total=len(rows)):
            pid = str(row["patient_id"])
            case = cases[pid]
            for phase, src in enumerate(case.images):
                dst = target.image(pid, phase)
                digest = _copy(src, dst, link)
                known[dst.relative_to(tmp).as_posix()] = digest
                staged_entries.setdefault(case.root, []).append((src.relative_to(case.root).as_posix(), digest))
                n_images += 1
            masks: dict[str, Any] = {}
            for kind, src, dst in (("expert", case.expert, target.expert_mask(pid)),
                                   ("automatic", case.automatic, target.automatic_mask(pid))):
                if src is None:
                    continue
                digest = _copy(src, dst, link)
                known[dst.relative_to(tmp).as_posix()] = digest
                root = next(r for r in defn.staged if src.is_relative_to(r))
                staged_entries.setdefault(root, []).append((src.relative_to(root).as_posix(), digest))
                masks[kind] = patient_info.load_mask(dst)
                n_expert += kind == "expert"
                n_auto += kind == "automatic"
            first = nib.load(str(target.image(pid, 0)))
            header = first.header
            orientation = "".join(nib.aff2axcodes(first.affine))  # as written; verify compares it to the profile
            source = "expert" if "expert" in masks else ("automatic" if "automatic" in masks else None)
            doc = patient_info.patient_info(row, img_cols, header, orientation, masks.get(source) if source else None, source)
            if case.patient_info is not None:
                # staged per-case facts (e.g. an annotated lesion box) are kept; computed values win on conflict
                try:
                    doc = patient_info.merge(json.loads(case.patient_info.read_text()), doc)
                except (OSError, ValueError) as exc:
                    raise InputUnreadable(f"staged patient info unreadable: {exc}", str(case.patient_info)) from exc
                n_info += 1
            _text(target.patient_info(pid), patient_info.dumps(doc))
            if masks and staged_qc is None:
                spacing = tuple(float(z) for z in header.get_zooms()[:3])
                qc_rows.append(qc.case_row(pid, spacing, masks.get("automatic"), masks.get("expert")))

        if staged_qc is not None:
            qc.write_qc(qc.carried_over(staged_qc, set(df["patient_id"].astype(str))), tmp / QC)
        elif qc_rows:
            qc.write_qc(qc.qc_frame(qc_rows), tmp / QC)
        from etl.release.quality import write_review_files  # ratings + expert corrections (mamamia review)

        review_files = write_review_files(defn, df, tmp, known)

        write_table(df, tmp / TABLE)
        write_table(df, tmp / XLSX)
        _text(tmp / SPLITS, split_csv_text(result))
        _text(tmp / "splits_final.json", json.dumps(result.nnunet_splits(), indent=2) + "\n")
        _text(tmp / "data_dictionary.md", dictionary.data_dictionary(df, defn.release_id))
        datasets = sorted(str(d) for d in df["dataset"].dropna().unique())
        counts = {str(k): int(v) for k, v in df["dataset"].value_counts().items()}
        _text(tmp / "LICENSES.md", _licenses(defn, datasets, counts))

        sums = {rel: known.get(rel) or sha256_file(tmp / rel) for rel in release_files(tmp)}
        _text(tmp / "croissant.json", croissant.dumps(croissant.croissant(defn, df, sums)))

        inputs: dict[str, Any] = {
            "table": {"path": defn.portable(defn.table), "sha256": sha256_file(defn.table)},
            "staged": [
                {"path": defn.portable(root), "files": len(staged_entries.get(root, [])),
                 "sha256_of_listing": _staged_digest(staged_entries.get(root, []))}
                for root in defn.staged
            ],
            "imaging_json": sum(1 for c in cases.values() if c.imaging_json is not None and c.patient_id in split_of),
            "segmentation_qc": {"path": f"{defn.portable(staged_qc.parent)}/{QC}",
                                "sha256": sha256_file(staged_qc)} if staged_qc else None,
            "caches": [defn.portable(c) for c in defn.caches],
            "previous": {"path": defn.portable(defn.previous), "release": _name_of(defn.previous),
                         "sha256_of_manifest": sha256_file(defn.previous / MANIFEST)
                         if (defn.previous / MANIFEST).is_file() else None} if defn.previous else None,
            "exclusions": {"path": defn.portable(defn.exclusions), "sha256": sha256_file(defn.exclusions)}
            if defn.exclusions else None,
            "review": review_files,
        }
        extra = {
            "cases": {"total": len(df), "by_dataset": dict(sorted(counts.items())), "left_out_without_images": dropped,
                      "excluded": excluded,
                      "staged_without_table_row": unlisted},
            "imaging_overrides_from_staged": overrides,
            "split": {"file": {"path": defn.portable(defn.split_file), "sha256": sha256_file(defn.split_file)} if defn.split_file else None,
                      "seed": defn.split.seed, "test_fraction": defn.split.test_fraction, "folds": defn.split.folds,
                      "min_stratum": defn.split.effective_min_stratum, "merged_strata": result.merges},
            "outputs": {"images": n_images, "expert_masks": n_expert, "automatic_masks": n_auto,
                        "patient_info_merged_from_staged": n_info,
                        "segmentation_qc": "carried over from staged" if staged_qc else ("computed" if qc_rows else None)},
            "stage_ledger": _ledger(defn),
        }
        _text(tmp / "provenance.json", _provenance(defn, inputs, extra, out))

        diff_md = previous_log = None
        if defn.previous is not None:
            prev_changelog = defn.previous / "CHANGELOG.md"
            previous_log = prev_changelog.read_text() if prev_changelog.exists() else None
            sums = {rel: known.get(rel) or sha256_file(tmp / rel) for rel in release_files(tmp)}
            prev = defn.previous
            if _name_of(prev) == defn.release_id:
                log.warning("previous release %s has the same name and version as this one", prev)
            prev_sums = {k: v for k, v in read_manifest(prev).items() if k != "CHANGELOG.md"}
            d = diff_parts(_name_of(prev), load_release_table(prev), prev_sums, defn.release_id, df, sums)
            diff_md = diff_text(d, markdown=True)
        _text(tmp / "CHANGELOG.md", _changelog(defn, df, diff_md, previous_log))
        if report:  # report.html, the data card (etl/report), checksummed and verified with the rest
            from etl.report.release import write_release_report

            write_release_report(tmp, verified=verify)
        final = write_manifest(tmp, known)
        for rel in [*final, MANIFEST]:
            (tmp / rel).chmod(0o644)  # temp-file writes are private (0600); a release is for reading

        if verify:
            from etl.release.verify import verify_release

            problems = verify_release(tmp, checksums=False, roots=(defn.path.parent, *defn.staged))
            if problems:
                for p in problems:
                    log.error("%s", p.describe())
                raise ValidationFailed(f"built release does not verify: {len(problems)} problem(s), first: "
                                       f"{problems[0].message}", problems[0].where)
    size = sum((out / rel).stat().st_size for rel in final) + (out / MANIFEST).stat().st_size
    return BuildResult(out, len(df), n_images, n_expert, n_auto, size, len(final) + 1, dropped, overrides, result.merges)


def _apply_exclusions(df: pd.DataFrame, defn: ReleaseDefinition) -> tuple[pd.DataFrame, dict[str, str]]:
    """Drop excluded cases (shipped manifests/exclusions.csv + the definition's ``sources.exclusions``).

    The release is the last gate: a case excluded after its table was built must still never ship."""
    from etl.extract.manifest import read_exclusions

    excluded = read_exclusions(defn.exclusions)
    hit = {pid: excluded[pid] for pid in df["patient_id"].astype(str) if pid in excluded}
    for pid, reason in sorted(hit.items()):
        log.info("excluded %s: %s", pid, reason)
    return df[~df["patient_id"].isin(list(hit))].reset_index(drop=True), dict(sorted(hit.items()))


def is_replaceable_release(path: Path) -> bool:
    """A directory ``release build`` wrote (SHA256SUMS and our provenance.json), so ``--out`` may replace it.

    Stricter than ``etl.use.release.is_release``, which only asks whether a folder can be opened as a release
    (it has the table); replacing a folder needs proof that this tool made it."""
    try:
        prov = json.loads((path / "provenance.json").read_text())
    except (OSError, ValueError):
        return False
    return (path / MANIFEST).is_file() and isinstance(prov, dict) and (prov.get("tool") or {}).get("name") == "mamamia-etl"


def _check_out(out: Path, defn: ReleaseDefinition) -> None:
    """``--out`` is replaced wholesale on success, so it must be new, empty or an earlier release (never a
    folder of other files, never one holding the build's own inputs)."""
    from etl.atomic import recover_previous

    recover_previous(out)  # a swap killed between its two renames: the previous release is put back first
    if out.exists() and not out.is_dir():
        raise ConfigError("--out names an existing file, not a release directory", str(out))
    if out.is_dir() and any(out.iterdir()) and not is_replaceable_release(out):
        raise ConfigError("--out is an existing folder that is not a release (no SHA256SUMS + provenance.json "
                          "written by mamamia); refusing to replace it, choose a new --out", str(out))
    for p in defn.staged:
        if p.is_relative_to(out):
            raise ConfigError(f"--out would replace the staged directory {p} the build reads", str(out))


def _name_of(root: Path) -> str:
    try:
        rel = json.loads((root / "provenance.json").read_text()).get("release") or {}
        return f"{rel['name']}-{rel['version']}"
    except (OSError, ValueError, KeyError):
        return root.name

