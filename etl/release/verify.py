"""Check a built release: checksums, schema, files vs rows, NIfTI orientation, no PHI.

``verify_release(path)`` returns every problem found (empty list = the release is sound); ``mamamia
release verify`` and ``mamamia validate`` on a release directory print them and exit 1 if there are any.
The naming templates and orientation profile are read from the release's own ``provenance.json``, so a
release is checked against the definition it was built with.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from etl.contracts import (CROISSANT, MANIFEST, OPTIONAL_FILES, PROVENANCE, QC, REQUIRED_FILES, SPLITS, TABLE,
                           TABLE_XLSX as XLSX)
from etl.errors import EtlError
from etl.layout import Layout
from etl.release.definition import PROFILES
from etl.release.manifest import release_files, sha256_file

log = logging.getLogger("etl.release.verify")

MAX_LISTED = 50  # per check; the rest is summarised in one line


@dataclass(frozen=True)
class Problem:
    """One finding: which check, where (file, row or column), what is wrong."""

    check: str
    where: str
    message: str

    def describe(self) -> str:
        return f"{self.check}: {self.message} ({self.where})"

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def _definition(root: Path) -> dict[str, Any]:
    try:
        prov = json.loads((root / PROVENANCE).read_text())
        return dict(prov.get("definition") or {})
    except (OSError, ValueError):
        return {}


def _cap(problems: list[Problem], check: str) -> list[Problem]:
    mine = [p for p in problems if p.check == check]
    if len(mine) <= MAX_LISTED:
        return problems
    others = [p for p in problems if p.check != check]
    return others + mine[:MAX_LISTED] + [Problem(check, "release", f"... and {len(mine) - MAX_LISTED} more {check} problems")]


def check_checksums(root: Path) -> list[Problem]:
    from etl.progress import track
    from etl.release.manifest import load_manifest

    try:
        sums, bad = load_manifest(root)
    except EtlError as exc:
        return [Problem("checksum", MANIFEST, exc.what)]
    out = [Problem("checksum", f"{MANIFEST} line {lineno}", what) for lineno, what in bad]

    present = set(release_files(root))
    for rel, digest in track(sorted(sums.items()), "verify: checksums", total=len(sums)):
        path = root / rel
        if rel not in present:
            out.append(Problem("checksum", rel, f"listed in {MANIFEST} but missing"))
        elif sha256_file(path) != digest:
            out.append(Problem("checksum", rel, f"content does not match its {MANIFEST} checksum"))
    for rel in sorted(present - set(sums)):
        out.append(Problem("checksum", rel, f"file is not listed in {MANIFEST}"))
    return out


def check_table(root: Path) -> tuple[pd.DataFrame | None, list[Problem]]:
    from etl.release.diff import table_diff
    from etl.release.tableio import base_frame, read_table, validate

    out: list[Problem] = []
    try:
        df = read_table(root / TABLE)
    except EtlError as exc:
        return None, [Problem("schema", TABLE, exc.what)]
    report = validate(df)
    for v in report.errors:
        where = f"{TABLE} row {v.row}" + (f" ({v.patient_id})" if v.patient_id else "") + (f" column {v.column}" if v.column else "")
        value = "" if v.value is None else f" value {v.value!r}"
        out.append(Problem("schema", where, f"{v.message}{value} [{v.rule}]"))
    try:
        xl = read_table(root / XLSX)
    except EtlError as exc:
        out.append(Problem("schema", XLSX, exc.what))
    else:
        d = table_diff(base_frame(df), xl)
        if d["cases_added"] or d["cases_removed"] or d["variables"] or d["columns_added"] or d["columns_removed"]:
            detail = ", ".join(f"{c} ({i['changed']})" for c, i in d["variables"].items())
            out.append(Problem("schema", XLSX, "xlsx drop-in differs from the Parquet table: "
                               f"{len(d['cases_added']) + len(d['cases_removed'])} cases, columns {detail or 'none'}"
                               + (f", extra/missing columns {d['columns_added'] + d['columns_removed']}"
                                  if d["columns_added"] or d["columns_removed"] else "")))
    return df, out


def check_splits(root: Path, df: pd.DataFrame) -> list[Problem]:
    from etl.split import read_split

    try:
        sp = read_split(root / SPLITS)
    except EtlError as exc:
        detail = (exc.where or "").replace(str(root / SPLITS), "").lstrip(": ")
        return [Problem("split", f"{SPLITS} {detail}" if detail else SPLITS, exc.what)]
    out = []
    ids = set(df["patient_id"].astype(str))
    sids = set(sp["patient_id"].astype(str))
    for pid in sorted(ids - sids):
        out.append(Problem("split", f"{SPLITS} ({pid})", "table case has no split assignment"))
    for pid in sorted(sids - ids):
        out.append(Problem("split", f"{SPLITS} ({pid})", "split names a case that is not in the table"))
    bad = sp[~sp["split"].isin(["train", "test"])]
    for pid, value in zip(bad["patient_id"], bad["split"]):
        out.append(Problem("split", f"{SPLITS} ({pid})", f"split must be train or test, got {value!r}"))
    for pid in sorted(sp.loc[sp["patient_id"].duplicated(), "patient_id"].astype(str).unique()):
        out.append(Problem("split", f"{SPLITS} ({pid})", "case is listed more than once"))
    folds = _folds(root)
    train = sp[sp["split"] == "train"]
    for pid, fold in zip(train["patient_id"], train["fold"]):
        if fold is pd.NA or pd.isna(fold) or (folds and not 0 <= int(fold) < folds):
            out.append(Problem("split", f"{SPLITS} ({pid})", f"training case needs a fold in 0..{(folds or 1) - 1}, "
                               f"got {'nothing' if fold is pd.NA or pd.isna(fold) else int(fold)}"))
    for pid in sp.loc[(sp["split"] == "test") & sp["fold"].notna(), "patient_id"]:
        out.append(Problem("split", f"{SPLITS} ({pid})", "test case must have no fold"))
    if "split" in df.columns:
        merged = df[["patient_id", "split"]].merge(sp[["patient_id", "split"]], on="patient_id", suffixes=("", "_csv"))
        for pid in merged.loc[merged["split"].astype(str) != merged["split_csv"].astype(str), "patient_id"]:
            out.append(Problem("split", f"{TABLE} ({pid})", f"split column disagrees with {SPLITS}"))
    return out


def _folds(root: Path) -> int | None:
    """Number of cross-validation folds the release was built with (provenance), if recorded."""
    try:
        prov = json.loads((root / PROVENANCE).read_text())
        folds = (prov.get("split") or {}).get("folds")
        return None if folds is None else int(folds)
    except (OSError, ValueError, TypeError, AttributeError):
        return None


def _expected_files(layout: Layout, df: pd.DataFrame, root: Path) -> tuple[set[str], list[Problem]]:
    """Files every row must have (images, patient info) plus masks it has; problems for rows lacking images."""
    out: list[Problem] = []
    expected: set[str] = set()
    for pid, n in zip(df["patient_id"].astype(str), df["num_phases"]):
        images = layout.images(pid)  # phases 0, 1, ... up to the first gap
        n_phases = None if n is pd.NA or pd.isna(n) else int(n)
        # a row owns phases 0..num_phases-1 even after a gap, so a renamed or deleted phase is named as such
        present = {p for p in (layout.image(pid, k) for k in range(n_phases or 0)) if p.exists()} | set(images)
        for p in present:
            expected.add(p.relative_to(root).as_posix())
        where = f"{TABLE} ({pid})"
        if not present:
            out.append(Problem("images", where, "case has no image files"))
        elif n_phases is None:
            out.append(Problem("images", where, f"num_phases is missing but {len(images)} phase file(s) exist"))
        else:
            gaps = [layout.image(pid, k).relative_to(root).as_posix() for k in range(n_phases)
                    if not layout.image(pid, k).exists()]
            if gaps:
                out.append(Problem("images", where, f"{len(present)} phase file(s) but num_phases is {n_phases}: "
                                   f"missing {', '.join(gaps)}"))
            if len(images) > n_phases:
                out.append(Problem("images", where, f"{len(images)} phase file(s) but num_phases is {n_phases}"))
        info = layout.patient_info(pid)
        expected.add(info.relative_to(root).as_posix())
        if not info.exists():
            out.append(Problem("images", where, f"missing {info.relative_to(root).as_posix()}"))
        for mask in (layout.expert_mask(pid), layout.automatic_mask(pid)):
            if mask.exists():
                expected.add(mask.relative_to(root).as_posix())
    return expected, out


def check_files(root: Path, layout: Layout, df: pd.DataFrame) -> list[Problem]:
    expected, out = _expected_files(layout, df, root)
    case_dirs = layout.top_folders()
    nested = {layout.corrections().relative_to(root).as_posix()}  # review outputs (etl/release/quality.py)
    for rel in release_files(root):
        top = rel.split("/", 1)[0]
        if "/" not in rel:
            if rel not in REQUIRED_FILES and rel not in OPTIONAL_FILES:
                out.append(Problem("files", rel, "unexpected file in the release root"))
        elif top in case_dirs:
            if rel not in expected and rel not in nested:
                out.append(Problem("files", rel, "file belongs to no table row (or breaks the naming templates)"))
        else:
            out.append(Problem("files", rel, "unexpected file outside the release layout"))
    for rel in REQUIRED_FILES:
        if not (root / rel).exists():
            out.append(Problem("files", rel, "required release file is missing"))
    return out


def check_niftis(root: Path, layout: Layout, df: pd.DataFrame, profile: str, phi: bool,
                 phi_values: dict[str, str] | None = None, roots: tuple[str, ...] = ()) -> list[Problem]:
    """Orientation (and PHI in header fields) of every image and mask; reads headers only."""
    import nibabel as nib
    import numpy as np

    from etl.progress import track
    from etl.release.phi import scan_nifti

    codes = PROFILES.get(profile)
    out: list[Problem] = []
    rows = list(zip(df["patient_id"].astype(str), df["view"] if "view" in df.columns else [None] * len(df)))
    for pid, view in track(rows, "verify: NIfTI headers", total=len(rows)):
        expected = codes.get(str(view).strip().lower()) if codes and isinstance(view, str) else None
        ref = None
        files = [(p, "image") for p in layout.images(pid)]
        files += [(p, "mask") for p in (layout.expert_mask(pid), layout.automatic_mask(pid)) if p.exists()]
        for path, kind in files:
            rel = path.relative_to(root).as_posix()
            try:
                img: Any = nib.load(str(path))  # a NIfTI (SpatialImage: shape, affine)
                hdr = img.header
                axcodes = "".join(nib.aff2axcodes(img.affine))
            except Exception as exc:  # nibabel raises many types for a broken file; each is a finding
                out.append(Problem("nifti", rel, f"header not readable ({type(exc).__name__}: {str(exc)[:120]})"))
                continue
            damage = _data_damage(path, hdr)
            if damage:
                out.append(Problem("nifti", rel, damage))
            if expected and axcodes != expected:
                out.append(Problem("orientation", rel, f"orientation {axcodes}, profile {profile} expects {expected} for {view}"))
            if kind == "image" and ref is None:
                ref = (img.shape[:3], img.affine)
            elif ref is not None and (img.shape[:3] != ref[0] or not np.allclose(img.affine, ref[1], atol=1e-3)):
                out.append(Problem("nifti", rel, f"grid {img.shape[:3]} differs from phase 0 {ref[0]} (shape or affine)"))
            if phi:
                out.extend(Problem("phi", f"{h.file} {h.where}", h.what) for h in scan_nifti(path, rel, hdr, phi_values, roots))
    return out


def _needed_bytes(hdr: Any) -> int:
    """Header offset + voxel bytes a single-file NIfTI must hold; ValueError when the header cannot say."""
    import numpy as np
    from nibabel.spatialimages import HeaderDataError

    try:
        # single-file NIfTI: data starts at vox_offset, which cannot be inside the header and extensions
        # (nibabel reads a 0 there as "right after them")
        first = int(hdr.sizeof_hdr) + 4 + int(hdr.extensions.get_sizeondisk()) if hasattr(hdr, "extensions") else 0
        offset = max(int(hdr.get_data_offset()), first)
        shape = tuple(int(n) for n in hdr.get_data_shape())
        itemsize = int(hdr.get_data_dtype().itemsize)
    except (AttributeError, KeyError, TypeError, ValueError, OverflowError, HeaderDataError) as exc:
        raise ValueError(f"{type(exc).__name__}: {str(exc)[:120]}") from exc
    if any(n < 0 for n in shape):
        raise ValueError(f"negative dimension in data shape {shape}")
    return offset + int(np.prod(shape, dtype=np.int64)) * itemsize


def _data_damage(path: Path, hdr: Any) -> str | None:
    """Why the voxel data of a NIfTI is incomplete, or None. Cheap first: the gzip trailer records the
    uncompressed size (mod 2**32), which must equal header offset + voxel bytes; only on a mismatch is the
    stream decompressed to tell a truncated or corrupt file from an unusual (multi-member) gzip.

    A check that cannot run is a finding too (a header that gives no data size, a file that cannot be
    read): a skipped check must never look like a passed one."""
    try:
        need = _needed_bytes(hdr)
    except ValueError as exc:
        return f"truncation check could not run: the header gives no voxel data size ({exc})"
    try:
        return _damage_against(path, need)
    except OSError as exc:
        return f"truncation check could not run: file not readable ({type(exc).__name__}: {str(exc)[:120]})"


def _damage_against(path: Path, need: int) -> str | None:
    """``_data_damage`` once the size the file must have is known (``need`` bytes of header + voxels)."""
    import zlib

    if not path.name.endswith(".gz"):
        size = path.stat().st_size
        return None if size >= need else f"voxel data truncated: {size} of {need} bytes"
    with open(path, "rb") as fh:
        fh.seek(0, 2)
        if fh.tell() >= 4:
            fh.seek(-4, 2)
            if int.from_bytes(fh.read(4), "little") == need % (1 << 32):
                return None
        fh.seek(0)
        got = 0
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            while data := fh.read(1 << 20):
                while data:
                    got += len(d.decompress(data))
                    data = b""
                    if d.eof and d.unused_data:  # another gzip member follows
                        data = d.unused_data
                        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        except zlib.error as exc:
            return f"gzip stream corrupt ({exc})"
        if not d.eof:
            return f"gzip stream truncated ({got} of {need} bytes of header + voxel data)"
    if got < need:
        return f"voxel data truncated: {got} of {need} bytes"
    return None


def check_metadata(root: Path, df: pd.DataFrame | None) -> list[Problem]:
    """provenance.json and croissant.json parse; Croissant checksums match; QC rows name table cases."""
    out: list[Problem] = []
    for name in (PROVENANCE, CROISSANT):
        path = root / name
        if not path.exists():
            continue  # reported by the file check
        try:
            doc = json.loads(path.read_text())
        except ValueError as exc:
            out.append(Problem("metadata", name, f"not valid JSON: {exc}"))
            continue
        if name == CROISSANT:
            for item in doc.get("distribution") or []:
                rel, digest = item.get("contentUrl"), item.get("sha256")
                if rel and digest and (root / rel).exists() and sha256_file(root / rel) != digest:
                    out.append(Problem("metadata", name, f"sha256 of {rel} does not match the file"))
    qc_path = root / QC
    if qc_path.exists() and df is not None:
        try:
            ids = set(pd.read_parquet(qc_path, columns=["patient_id"])["patient_id"].astype(str))
        except (OSError, ValueError, KeyError) as exc:
            out.append(Problem("metadata", QC, f"unreadable: {str(exc)[:120]}"))
        else:
            for pid in sorted(ids - set(df["patient_id"].astype(str))):
                out.append(Problem("metadata", f"{QC} ({pid})", "QC row for a case not in the table"))
    return out


def check_phi(root: Path, phi_values: dict[str, str] | None = None, roots: tuple[str, ...] = ()) -> list[Problem]:
    """Every non-NIfTI file (NIfTI headers are scanned with the orientation check)."""
    from etl.release.phi import scan_file

    out: list[Problem] = []
    for rel in release_files(root):
        if rel.endswith((".nii", ".nii.gz")):
            continue
        out.extend(Problem("phi", f"{h.file} {h.where}", h.what) for h in scan_file(root / rel, rel, phi_values, roots))
    return out


def release_roots(root: Path, extra: list[Path] | tuple[Path, ...] = ()) -> tuple[str, ...]:
    """Folders of this machine a release must not name: its own location (also without the build's
    ``.partial`` suffix), the folder holding it, $HOME and ``extra`` (the build adds its definition's folder
    and the staged folders)."""
    from etl.release.machine_paths import machine_roots

    here = Path(os.path.abspath(root))
    final = here.with_name(here.name.removesuffix(".partial"))
    return machine_roots(here, final, here.parent, *extra)


def verify_release(path: str | Path, *, checksums: bool = True, phi: bool = True,
                   phi_values: dict[str, str] | None = None, roots: tuple[Path, ...] = ()) -> list[Problem]:
    """All problems of a release directory; an empty list means it verifies.

    ``phi_values`` (value -> DICOM attribute, e.g. from ``etl.release.phi.source_values(dicom_dir)``) adds a
    literal search for the source's own identifying values; ``roots`` adds folders of the build machine to
    the path search (see ``release_roots``).
    """
    root = Path(path)
    if not root.is_dir():
        return [Problem("files", str(root), "not a directory")]
    if not (root / TABLE).exists() and not (root / MANIFEST).exists():
        return [Problem("files", str(root), f"not a release (no {TABLE}, no {MANIFEST})")]
    definition = _definition(root)
    profile = str(definition.get("profile") or "mama-mia-v1")
    problems: list[Problem] = []
    if profile not in PROFILES:
        problems.append(Problem("orientation", PROVENANCE, f"unknown orientation profile {profile!r}"))
    layout = Layout.from_recorded(root, definition)
    machine = release_roots(root, roots) if phi else ()
    if checksums:
        problems += check_checksums(root)
    df, table_problems = check_table(root)
    problems += table_problems
    if df is not None:
        problems += check_splits(root, df)
        problems += check_files(root, layout, df)
        from etl.release.quality import check_review_files

        problems += check_review_files(root, layout, df)
        problems += check_niftis(root, layout, df, profile, phi, phi_values, machine)
    problems += check_metadata(root, df)
    if phi:
        problems += check_phi(root, phi_values, machine)
    for check in sorted({p.check for p in problems}):
        problems = _cap(problems, check)
    return problems


def problems_json(problems: list[Problem]) -> str:
    return json.dumps({"valid": not problems, "n_problems": len(problems),
                       "problems": [p.to_dict() for p in problems]}, indent=2) + "\n"

