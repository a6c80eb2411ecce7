"""Work packages for the experts: one folder per expert with the images, the mask to edit and a manifest.

Why a folder of plain NIfTI files: the experts correct in their own desktop viewer (ITK-SNAP, 3D Slicer,
Mango), offline, possibly on another machine; a folder they can open and send back is the interface every
viewer supports. Why blinded: a rater's verdict or the method's name biases the correction, so nothing in a
package says how the mask was made or how it was judged (the mask is rewritten as a bare uint8 label image
on the grid of the first post-contrast phase; its header carries no description). Who got what, for the
curator, is ``assignments.csv`` at the top of the packages folder, outside every expert's folder.

The whole packages folder is built in ``<out>.partial/`` and renamed when complete.
"""

from __future__ import annotations

import csv
import io
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from typing import TYPE_CHECKING

import numpy as np

from etl.errors import ConfigError, EtlError, InputUnreadable, ValidationFailed
from etl.layout import Layout
from etl.types import StrPath

if TYPE_CHECKING:
    import nibabel as nib

    from etl.review.assign import Assignment

log = logging.getLogger("etl.review.packages")

MANIFEST = "manifest.csv"
INSTRUCTIONS = "INSTRUCTIONS.md"
ASSIGNMENTS = "assignments.csv"
MANIFEST_COLUMNS = ("patient_id", "image_0000", "image_0000_sha256", "image_0001", "image_0001_sha256",
                    "mask", "mask_sha256", "no_lesion")
ASSIGNMENT_COLUMNS = ("expert", "patient_id", "dataset", "package", "automatic_sha256", "seed")
FIRST_POST_CONTRAST = 1
_TRUE = {"1", "yes", "y", "true", "x"}


# ------------------------------------------------------------------------------------------------ sources


@dataclass
class Candidates:
    """What `review assign` may hand out, from the review case loader (``etl.review.cases``)."""

    layout: Layout
    eligible: list[tuple[str, str]] = field(default_factory=list)  # (patient_id, dataset)
    has_expert: list[str] = field(default_factory=list)
    unusable: list[tuple[str, str]] = field(default_factory=list)  # (patient_id, why)


def candidates(root: StrPath, include_corrected: bool = False, definition: StrPath | None = None) -> Candidates:
    """Cases that can go to an expert: an automatic mask and the first post-contrast phase exist; by default
    only cases without an expert mask yet (``include_corrected`` = ``--all``)."""
    from etl.review.cases import load_cases

    cs = load_cases(root, definition)
    out = Candidates(layout=cs.layout, unusable=list(cs.skipped))
    for case in cs.cases:
        if case.post is None:
            out.unusable.append((case.patient_id, f"only {len(case.phases)} phase(s): no first post-contrast phase"))
        elif case.expert is not None and not include_corrected:
            out.has_expert.append(case.patient_id)
        else:
            out.eligible.append((case.patient_id, case.dataset))
    return out


# ------------------------------------------------------------------------------------------------ writing


def _sha256(path: Path) -> str:
    from etl.hashing import sha256_file

    return sha256_file(path)


def _blank_like(path: Path) -> nib.Nifti1Image:
    """The image (header only is used) with every free-text header field emptied: nothing but geometry goes
    into a package."""
    from etl.segment.io import load

    img = load(path)  # a fresh object: blanking its header leaves no other reader affected
    for key in ("descrip", "aux_file", "intent_name", "db_name"):
        if key in img.header:
            img.header[key] = b""
    return img


def mask_for_expert(automatic: Path, reference: Path) -> bytes:
    """The automatic mask as a bare uint8 label image (0/1) on the reference phase's grid."""
    from etl.segment.io import grid_difference, load, nifti_bytes, read_array, same_grid

    ref = load(reference)
    auto = load(automatic)
    if not same_grid(auto, ref):
        raise ValidationFailed(f"automatic mask is not on the grid of {reference.name}: {grid_difference(auto, ref)}",
                               str(automatic))
    data = (read_array(automatic, np.float32) > 0).astype(np.uint8)
    return nifti_bytes(data, _blank_like(reference), dtype=np.uint8, level=6)


@dataclass
class PackagesResult:
    out: Path
    assigned: dict[str, list[str]]
    skipped: list[tuple[str, str]] = field(default_factory=list)


def _csv_text(columns: tuple[str, ...], rows: list[dict[str, object]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({c: r.get(c, "") for c in columns})
    return buf.getvalue()


def instructions(expert: str, n_cases: int) -> str:
    text = (Path(__file__).with_name("instructions.md")).read_text(encoding="utf-8")
    return Template(text).safe_substitute(expert=expert, n_cases=n_cases)


def write_packages(layout: Layout, assignments: list[Assignment], out: StrPath, seed: int) -> PackagesResult:
    """One folder per expert under ``out`` (built in ``out.partial``), plus ``assignments.csv``.

    ``assignments``: ``etl.review.assign.Assignment`` records. A case whose files cannot be packaged is
    left out with its reason (the others are written); ``out`` must not exist yet, or be empty, so that a
    package an expert may be working on is never replaced.
    """
    from etl.atomic import atomic_dir
    from etl.progress import track

    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError("packages folder exists and is not empty; experts may be working on it, choose a new "
                          "--out", str(out))
    experts = list(dict.fromkeys(a.expert for a in assignments))
    result = PackagesResult(out=out, assigned={e: [] for e in experts})
    rows_by_expert: dict[str, list[dict[str, object]]] = {e: [] for e in experts}
    top: list[dict[str, object]] = []
    with atomic_dir(out) as tmp:
        for a in track(assignments, "assign: packages", total=len(assignments)):
            folder = tmp / a.expert
            folder.mkdir(exist_ok=True)
            pid = a.patient_id
            try:
                images = [layout.image(pid, 0), layout.image(pid, FIRST_POST_CONTRAST)]
                for p in images:
                    if not p.exists():
                        raise InputUnreadable("phase file missing", str(p))
                auto = layout.automatic_mask(pid)
                mask_bytes = mask_for_expert(auto, images[1])
            except EtlError as exc:
                log.error("%s: not packaged: %s", pid, exc.message)
                result.skipped.append((pid, exc.message))
                continue
            names = [f"{pid}_0000.nii.gz", f"{pid}_0001.nii.gz", f"{pid}_mask.nii.gz"]
            for src, name in zip(images, names):
                shutil.copyfile(src, folder / name)  # a copy: an expert's viewer must never write into staged data
            (folder / names[2]).write_bytes(mask_bytes)
            rows_by_expert[a.expert].append({
                "patient_id": pid,
                "image_0000": names[0], "image_0000_sha256": _sha256(folder / names[0]),
                "image_0001": names[1], "image_0001_sha256": _sha256(folder / names[1]),
                "mask": names[2], "mask_sha256": _sha256(folder / names[2]),
                "no_lesion": "",
            })
            top.append({"expert": a.expert, "patient_id": pid, "dataset": a.dataset, "package": a.expert,
                        "automatic_sha256": _sha256(auto), "seed": seed})
            result.assigned[a.expert].append(pid)
        for e in experts:
            folder = tmp / e
            folder.mkdir(exist_ok=True)
            rows = sorted(rows_by_expert[e], key=lambda r: str(r["patient_id"]))
            (folder / MANIFEST).write_text(_csv_text(MANIFEST_COLUMNS, rows), encoding="utf-8")
            (folder / INSTRUCTIONS).write_text(instructions(e, len(rows)), encoding="utf-8")
        (tmp / ASSIGNMENTS).write_text(_csv_text(ASSIGNMENT_COLUMNS, top), encoding="utf-8")
    return result


# ------------------------------------------------------------------------------------------------ reading


@dataclass(frozen=True)
class ManifestRow:
    patient_id: str
    mask: str
    mask_sha256: str
    no_lesion: bool


def read_manifest(package: Path) -> dict[str, ManifestRow]:
    """The package's manifest (what was sent, and the expert's ``no_lesion`` marks)."""
    path = package / MANIFEST
    try:
        text = path.read_text(encoding="utf-8-sig")  # spreadsheet programs add a BOM
    except (OSError, UnicodeDecodeError) as exc:
        raise InputUnreadable(f"package manifest unreadable: {getattr(exc, 'strerror', None) or exc}", str(path)) from exc
    reader = csv.DictReader(io.StringIO(text))
    need = {"patient_id", "mask", "mask_sha256"}
    missing = need - set(reader.fieldnames or [])
    if missing:
        raise InputUnreadable(f"package manifest lacks column(s) {', '.join(sorted(missing))}", str(path))
    out: dict[str, ManifestRow] = {}
    for lineno, row in enumerate(reader, 2):
        pid = (row.get("patient_id") or "").strip()
        if not pid:
            raise InputUnreadable("empty patient_id", f"{path}: line {lineno}")
        if pid in out:
            raise InputUnreadable(f"case {pid} listed twice", f"{path}: line {lineno}")
        mark = (row.get("no_lesion") or "").strip().lower()
        out[pid] = ManifestRow(pid, (row.get("mask") or "").strip(), (row.get("mask_sha256") or "").strip(),
                               mark in _TRUE)
    return out


def read_assignments(path: Path) -> list[dict[str, str]]:
    """The top-level ``assignments.csv`` (empty list when the package was moved without it)."""
    if not path.exists():
        return []
    try:
        with path.open(encoding="utf-8-sig", newline="") as fh:
            return [dict(r) for r in csv.DictReader(fh)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputUnreadable(f"assignments unreadable: {exc}", str(path)) from exc
