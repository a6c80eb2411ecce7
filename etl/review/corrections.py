"""Import of corrected masks from an expert's package, with what each correction changed.

Why the checks: a corrected mask comes back from a desktop viewer on another machine. It must be on the
image's voxel grid (a viewer that saved it in its own orientation is put back by an exact axis permutation /
flip; anything that would need resampling is refused), binary (label values other than 0/1 are reported and
read as tumour), and empty only when the expert said so. A mask never replaces an expert mask silently:
``replace`` keeps the old one under a versioned name. Every mask is written atomically, so a killed import
leaves either the old file or the new one.

Why the statistics: the paper reports, per quality class, how much the experts changed the automatic masks
(Dice and HD95 between automatic and corrected mask, volume added and removed). They are computed here once,
on the written mask, with the segment stage's metrics (``etl.segment.metrics``, distances in mm), and kept
per case in ``<staged>/segmentations/corrections.parquet`` (one row per import; ``current`` marks the row of
the mask in place).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from etl.errors import EtlError, InputUnreadable, ValidationFailed
from etl.layout import Layout
from etl.types import Spacing, StrPath

log = logging.getLogger("etl.review.corrections")

COLUMNS: dict[str, str] = {
    "patient_id": "string",
    "expert": "string",
    "imported_at": "datetime64[us, UTC]",
    "version": "Int64",              # 1 = the case's first expert mask, 2 = the first replacement, ...
    "current": "boolean",            # this row describes the expert mask now in place
    "source_file": "string",         # file name in the package
    "reoriented": "boolean",         # saved by the viewer in another orientation of the same grid
    "label_values": "string",        # distinct values found in the file, e.g. "0,1" or "0,1,2"
    "no_lesion": "boolean",
    "automatic_sha256": "string",
    "expert_sha256": "string",
    "automatic_cm3": "Float64",
    "expert_cm3": "Float64",
    "added_cm3": "Float64",          # voxels in the expert mask, not in the automatic one
    "removed_cm3": "Float64",        # voxels in the automatic mask, not in the expert one
    "dice": "Float64",
    "hd95_mm": "Float64",
    "msd_mm": "Float64",
    "quality": "string",             # latest visual rating of the automatic mask (good|acceptable|poor|missed)
}
MASK_SUFFIXES = ("_mask.nii.gz", "_mask.nii")


# ------------------------------------------------------------------------------------------------ statistics


def correction_stats(automatic: np.ndarray | None, expert: np.ndarray, spacing: Spacing) -> dict[str, float | None]:
    """Volumes (cm3) added and removed by the expert, and Dice / HD95 / MSD (mm) automatic vs expert."""
    from etl.segment.metrics import agreement

    voxel_cm3 = float(np.prod(spacing)) / 1000.0
    exp = np.asarray(expert) > 0
    row: dict[str, float | None] = {"expert_cm3": float(np.count_nonzero(exp)) * voxel_cm3}
    if automatic is None:
        row.update(automatic_cm3=None, added_cm3=None, removed_cm3=None, dice=None, hd95_mm=None, msd_mm=None)
        return row
    auto = np.asarray(automatic) > 0
    a = agreement(auto, exp, spacing)
    row.update(
        automatic_cm3=float(np.count_nonzero(auto)) * voxel_cm3,
        added_cm3=float(np.count_nonzero(exp & ~auto)) * voxel_cm3,
        removed_cm3=float(np.count_nonzero(auto & ~exp)) * voxel_cm3,
        dice=a.dice,
        hd95_mm=None if np.isnan(a.hd95_mm) else a.hd95_mm,
        msd_mm=None if np.isnan(a.msd_mm) else a.msd_mm,
    )
    return row


# ------------------------------------------------------------------------------------------------ one mask


@dataclass(frozen=True)
class CheckedMask:
    data: np.ndarray        # uint8 0/1 on the reference grid
    reoriented: bool
    label_values: list[float]


def _labels(values: np.ndarray) -> list[float]:
    return [float(v) for v in np.unique(values[np.isfinite(values)])]


def check_mask(path: Path, reference: Path) -> CheckedMask:
    """The corrected mask as 0/1 on the grid of ``reference``, or a ValidationFailed naming ``path``."""
    import nibabel as nib
    from nibabel.orientations import io_orientation, ornt_transform

    from etl.segment.io import grid_difference, load, same_grid

    try:
        img: Any = nib.load(str(path))
        if len(img.shape) == 4 and img.shape[3] == 1:  # some viewers add a singleton time axis
            img = nib.funcs.squeeze_image(img)
        if len(img.shape) != 3:
            raise ValidationFailed(f"expected a 3-D mask, got shape {img.shape}", str(path))
        data = np.asarray(img.dataobj)
    except EtlError:
        raise
    except Exception as exc:  # nibabel raises many types for a broken file: each is "unreadable"
        raise InputUnreadable(f"cannot read NIfTI: {type(exc).__name__}: {str(exc)[:160]}", str(path)) from exc
    ref = load(reference)
    reoriented = False
    if not same_grid(img, ref):
        # another orientation of the same world grid: an exact axis permutation / flip puts it back
        transform = ornt_transform(io_orientation(img.affine), io_orientation(ref.affine))
        candidate = img.as_reoriented(transform)
        if not same_grid(candidate, ref):
            raise ValidationFailed(f"mask is not on the grid of {reference.name} ({grid_difference(img, ref)}; "
                                   "resampling would change the expert's voxels, so it is refused)", str(path))
        data = np.asarray(candidate.dataobj)
        reoriented = True
    labels = _labels(np.asarray(data, np.float64))
    return CheckedMask((np.nan_to_num(np.asarray(data, np.float64)) > 0).astype(np.uint8), reoriented, labels)


# ------------------------------------------------------------------------------------------------ the table


def corrections_path(layout: Layout) -> Path:
    """``segmentations/corrections.parquet``: in the folder that holds both mask folders (Layout)."""
    return layout.corrections()


def empty_table() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series([], dtype=t) for c, t in COLUMNS.items()})


def read_corrections(path: Path) -> pd.DataFrame:
    if not path.exists():
        return empty_table()
    try:
        df = pd.read_parquet(path)
    except (OSError, ValueError) as exc:
        raise InputUnreadable(f"corrections table unreadable: {str(exc)[:160]}", str(path)) from exc
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise InputUnreadable(f"corrections table lacks column(s) {', '.join(missing)}", str(path))
    return df[list(COLUMNS)].astype(COLUMNS)


def write_corrections(df: pd.DataFrame, path: Path) -> None:
    from etl.atomic import atomic_path

    df = df[list(COLUMNS)].astype(COLUMNS).sort_values(["patient_id", "version"], kind="mergesort")
    with atomic_path(path) as tmp:
        df.reset_index(drop=True).to_parquet(tmp, index=False, engine="pyarrow")


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Two imports into one staged directory (two experts at once) take turns on the table."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.lock"), "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# ------------------------------------------------------------------------------------------------ import


@dataclass
class ImportResult:
    imported: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)       # the same mask was imported before
    faults: list[tuple[str, str]] = field(default_factory=list)  # (where, what): one line each
    notes: list[str] = field(default_factory=list)


def _versioned(target: Path) -> Path:
    """Where a replaced expert mask is kept: ``<expert dir>_replaced/<name>.v<N>.nii.gz`` (outside the
    folder the release and the other stages read)."""
    folder = target.parent.with_name(target.parent.name + "_replaced")
    stem = target.name[: -len(".nii.gz")] if target.name.endswith(".nii.gz") else target.stem
    ext = target.name[len(stem):]
    n = 1
    while (folder / f"{stem}.v{n}{ext}").exists():
        n += 1
    return folder / f"{stem}.v{n}{ext}"


def _mask_file(package: Path, pid: str) -> Path | None:
    found = [package / f"{pid}{s}" for s in MASK_SUFFIXES if (package / f"{pid}{s}").exists()]
    if len(found) > 1:
        raise ValidationFailed(f"two masks for {pid} ({found[0].name} and {found[1].name}); keep one", str(package))
    return found[0] if found else None


def _clear_stale_temps(folder: Path) -> None:
    """Temp files of an import killed mid-write (``etl.atomic`` names them ``.<name>.*.tmp``)."""
    if folder.is_dir():
        for p in folder.glob(".*.nii.gz.*.tmp"):
            p.unlink(missing_ok=True)


def latest_quality(db: Path | None) -> dict[str, str]:
    """patient_id -> latest rating (any rater) from the review database or a ratings export (.csv/.parquet);
    empty without one."""
    if db is None:
        return {}
    db = Path(db)
    if not db.is_file():
        raise InputUnreadable("review database not found", str(db))
    from etl.review.store import latest_ratings, open_store, read_ratings

    if db.suffix.lower() in (".csv", ".parquet"):
        df = read_ratings(db)
        if "rated_at" in df.columns:
            df = df.sort_values("rated_at", kind="stable")
        return {str(p): str(s) for p, s in zip(df["patient_id"], df["score"])}  # the last word per case wins
    with open_store(db, create=False) as store:
        return latest_ratings(store)


def import_package(package: StrPath, layout: Layout, expert: str, *, replace: bool = False,
                   db: Path | None = None, now: dt.datetime | None = None) -> ImportResult:
    """Import every corrected mask of an expert's package into the staged directory of ``layout``."""
    from etl.progress import track
    from etl.hashing import sha256_file
    from etl.review.packages import ASSIGNMENTS, read_assignments, read_manifest
    from etl.segment.io import load, nifti_bytes, read_array, spacing_of

    package = Path(package)
    if not package.is_dir():
        raise InputUnreadable("package folder not found", str(package))
    manifest = read_manifest(package)
    result = ImportResult()
    assigned = read_assignments(package.parent / ASSIGNMENTS)
    owner = {r.get("patient_id", ""): r.get("expert", "") for r in assigned}
    auto_at_assignment = {r.get("patient_id", ""): r.get("automatic_sha256", "") for r in assigned}
    if not assigned:
        result.notes.append(f"no {ASSIGNMENTS} next to the package: cases are checked against its manifest only")

    # files for cases that are not in this expert's manifest; NIfTI files under names the import does not read
    known = {f"{pid}{s}" for pid in manifest for s in (*MASK_SUFFIXES, "_0000.nii.gz", "_0001.nii.gz")}
    for p in sorted(package.iterdir()):
        name = p.name
        suffix = next((s for s in MASK_SUFFIXES if name.endswith(s)), None)
        if suffix and name[: -len(suffix)] not in manifest:
            result.faults.append((str(p), f"mask for case {name[: -len(suffix)]}, which is not assigned to {expert}"))
        elif name.endswith((".nii", ".nii.gz")) and name not in known:
            result.notes.append(f"{name}: not a package file name, ignored (a corrected mask must be saved as "
                                "<patient_id>_mask.nii.gz)")

    quality = latest_quality(db)
    stamp = (now or dt.datetime.now(dt.timezone.utc)).replace(microsecond=0)
    table_path = corrections_path(layout)
    with _locked(table_path):  # mask writes happen under the lock: no other import has a temp file in flight
        _clear_stale_temps(layout.expert_mask("X").parent)
    for pid, row in track(sorted(manifest.items()), "import: masks", total=len(manifest)):
        where = str(package / (row.mask or f"{pid}_mask.nii.gz"))
        if owner and owner.get(pid) != expert:
            other = owner.get(pid)
            result.faults.append((where, f"case {pid} is assigned to {other}, not to {expert}" if other
                                  else f"case {pid} is not in {ASSIGNMENTS}"))
            continue
        try:
            mask_path = _mask_file(package, pid)
            if mask_path is None:
                raise InputUnreadable(f"case {pid} is missing from the package (no {pid}_mask.nii.gz)", str(package))
            where = str(mask_path)
            if row.mask_sha256 and sha256_file(mask_path) == row.mask_sha256:
                raise ValidationFailed("mask is unchanged since it was sent (not saved by the expert); save it "
                                       "even when nothing needs correcting", where)
            reference = layout.image(pid, 1)
            if not reference.exists():
                raise InputUnreadable("first post-contrast phase of the case not found in the staged directory",
                                      str(reference))
            checked = check_mask(mask_path, reference)
            n_voxels = int(checked.data.sum())
            if n_voxels == 0 and not row.no_lesion:
                raise ValidationFailed("mask is empty but the manifest does not mark the case no_lesion", where)
            if n_voxels > 0 and row.no_lesion:
                raise ValidationFailed(f"manifest marks the case no_lesion but the mask has {n_voxels} voxel(s)", where)
            ref_img = load(reference)
            data = nifti_bytes(checked.data, ref_img, dtype=np.uint8, level=6)
            target = layout.expert_mask(pid)
            new_sha = hashlib.sha256(data).hexdigest()
            auto_path = layout.automatic_mask(pid)
            auto = read_array(auto_path, np.float32) > 0 if auto_path.exists() else None
            if auto is not None and auto.shape != checked.data.shape:
                raise ValidationFailed(f"automatic mask grid {auto.shape} differs from the image grid "
                                       f"{checked.data.shape}", str(auto_path))
            stats = correction_stats(auto, checked.data, spacing_of(ref_img))
            auto_sha = sha256_file(auto_path) if auto_path.exists() else None
        except EtlError as exc:
            result.faults.append((exc.where or where, exc.what))
            continue
        if auto_sha is None:
            result.notes.append(f"{pid}: no automatic mask in the staged directory; correction statistics left empty")
        elif auto_at_assignment.get(pid) and auto_at_assignment[pid] != auto_sha:
            result.notes.append(f"{pid}: the automatic mask changed since the assignment; statistics are against "
                                "the current one")
        if checked.reoriented:
            result.notes.append(f"{pid}: {Path(where).name} was saved in another orientation; put back on the image grid")
        if any(v not in (0.0, 1.0) for v in checked.label_values):
            result.notes.append(f"{pid}: label values {', '.join(f'{v:g}' for v in checked.label_values)} read as "
                                "tumour where > 0")
        record: dict[str, Any] = {
            "patient_id": pid, "expert": expert, "imported_at": pd.Timestamp(stamp),
            "source_file": Path(where).name, "reoriented": checked.reoriented,
            "label_values": ",".join(f"{v:g}" for v in checked.label_values), "no_lesion": row.no_lesion,
            "automatic_sha256": auto_sha, "expert_sha256": new_sha, "quality": quality.get(pid), **stats,
        }
        with _locked(table_path):
            table = read_corrections(table_path)
            if target.exists():
                if sha256_file(target) == new_sha:
                    # this exact mask is in place already (a rerun, or a run killed before its record)
                    if not ((table["patient_id"] == pid) & (table["expert_sha256"] == new_sha)).any():
                        table = _add_row(table, record)
                        write_corrections(table, table_path)
                    result.already.append(pid)
                    continue
                if not replace:
                    result.faults.append((str(target), f"case {pid} already has an expert mask; rerun with --replace "
                                          "to replace it (the old one is kept under a versioned name)"))
                    continue
                kept = _versioned(target)
                kept.parent.mkdir(parents=True, exist_ok=True)
                from etl.atomic import write_bytes

                write_bytes(kept, target.read_bytes())
                result.notes.append(f"{pid}: previous expert mask kept as {kept.relative_to(layout.root)}")
            from etl.atomic import write_bytes

            write_bytes(target, data)
            table = _add_row(table, record)
            write_corrections(table, table_path)
        result.imported.append(pid)
    if result.imported:
        with _locked(table_path):
            refresh_qc(layout, result.imported)
    return result


def _add_row(table: pd.DataFrame, record: dict[str, Any]) -> pd.DataFrame:
    pid = record["patient_id"]
    mine = table["patient_id"] == pid
    table.loc[mine, "current"] = False
    record = {**record, "version": int(mine.sum()) + 1, "current": True}
    new = pd.DataFrame([{c: record.get(c) for c in COLUMNS}]).astype(COLUMNS)
    return pd.concat([table, new], ignore_index=True) if len(table) else new


def refresh_qc(layout: Layout, patient_ids: list[str]) -> None:
    """Update the staged ``segmentation_qc.parquet`` rows of the imported cases (its expert columns compare
    the automatic mask with the expert mask, which just changed). No QC table yet: nothing to do."""
    from etl.segment.config import SegmentationConfig
    from etl.segment.io import case_at
    from etl.segment.stage import QC_COLUMNS, QC_FILE, case_quality, write_qc

    path = layout.root / QC_FILE
    if not path.exists():
        return
    try:
        qc = pd.read_parquet(path)
    except (OSError, ValueError) as exc:
        log.warning("segmentation QC not refreshed: %s (%s)", str(exc)[:120], path)
        return
    rows = []
    for pid in patient_ids:
        case = case_at(layout, pid)
        if not case.automatic.exists():
            continue
        try:
            row, why = case_quality(case, SegmentationConfig())
        except EtlError as exc:
            log.warning("%s: segmentation QC not refreshed: %s", pid, exc.message)
            continue
        if why:
            log.warning("%s: QC: %s", pid, why)
        rows.append(row)
    if not rows:
        return
    fresh = pd.DataFrame(rows, columns=list(QC_COLUMNS)).astype(QC_COLUMNS)
    keep = qc[~qc["patient_id"].astype(str).isin(fresh["patient_id"].astype(str))]
    out = pd.concat([keep.astype({c: t for c, t in QC_COLUMNS.items() if c in keep.columns}), fresh], ignore_index=True)
    write_qc(out.sort_values("patient_id", ignore_index=True), path)


def current_corrections(df: pd.DataFrame) -> pd.DataFrame:
    """The rows describing the expert masks now in place, one per case."""
    return df[df["current"].fillna(False).astype(bool)].sort_values("patient_id", ignore_index=True)
