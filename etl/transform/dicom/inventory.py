"""File inventory of a case folder: which files are DICOM images, grouped by series.

Inventory first, convert second (heudiconv's lesson): headers only, pixel data located by offset. Counted
and ignored here: non-DICOM files, DICOM without pixels (DICOMDIR, reports), repeated SOP instances
(copied files) and localizer/scout images. Multi-frame files are expanded into one Slice per frame.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from etl.errors import DicomError, InputUnreadable
from etl.transform.dicom.header import expand_frames, read_header
from etl.transform.dicom.model import Decision, Phase, Slice

log = logging.getLogger("etl.transform.dicom")


INVENTORY_COLUMNS = ("series_uid", "series_number", "description", "image_type", "geometry", "n_images",
                     "temporal_positions", "kept", "rule", "detail", "phase_index")


@dataclass
class Inventory:
    """What a case folder holds, and what was decided about each series (``decisions``)."""

    root: Path
    n_files: int = 0
    n_non_dicom: int = 0
    n_non_image: int = 0
    n_duplicates: int = 0  # files repeating an already seen SOPInstanceUID (ignored)
    n_localizers: int = 0  # scout/localizer images (ignored)
    n_no_geometry: int = 0  # images of series without any patient geometry (screen captures; ignored)
    series: dict[str, list[Slice]] = field(default_factory=dict)
    phases: list[Phase] = field(default_factory=list)
    ignored_series: list[str] = field(default_factory=list)
    ignored_studies: list[str] = field(default_factory=list)
    series_errors: dict[str, str] = field(default_factory=dict)  # ignored series that failed their checks
    filtered: dict[str, str] = field(default_factory=dict)  # series ignored by a series_filter rule -> rule name
    filter_fallback: list[str] = field(default_factory=list)  # rules proposed but not applied (part of a dynamic)
    decisions: dict[str, Decision] = field(default_factory=dict)  # series -> the rule that decided
    recorded: list[str] = field(default_factory=list)  # series UIDs recorded for the case (--series-uids)
    broken: dict[str, str] = field(default_factory=dict)  # empty or cut files that may have been images -> why

    def _order(self) -> list[str]:
        return sorted(self.series, key=lambda u: (self.series[u][0].series_number or 0, u))

    def phase_indices(self, uid: str) -> list[int]:
        """The phase numbers (0 = pre-contrast) a series gives."""
        return [i for i, ph in enumerate(self.phases) if ph.series_uid == uid]

    def rows(self) -> list[dict[str, Any]]:
        """One row per series (``INVENTORY_COLUMNS``): heudiconv's dicominfo.tsv for this converter."""
        out = []
        for uid in self._order():
            slices = self.series[uid]
            s0 = next((s for s in slices if not s.geometry_error), slices[0])
            d = self.decisions.get(uid) or Decision(False, "unknown", "")
            normal = s0.normal  # a property computed per access: once per series, not per slice
            positions = {round(float(s.ipp @ normal), 3) for s in slices} if not s0.geometry_error else set()
            idx = self.phase_indices(uid)
            out.append({
                "series_uid": uid, "series_number": s0.series_number, "description": s0.description,
                "image_type": "\\".join(s0.image_type),
                "geometry": "" if s0.geometry_error else
                f"{s0.cols}x{s0.rows}x{len(positions)} @ {s0.pixel_spacing[1]:g}x{s0.pixel_spacing[0]:g} mm",
                "n_images": len(slices),
                "temporal_positions": round(len(slices) / len(positions)) if positions else None,
                "kept": bool(idx), "rule": d.rule, "detail": d.detail,
                "phase_index": ",".join(str(i) for i in idx),
            })
        return out

    def describe(self) -> list[str]:
        """Human-readable lines for --dry-run: every series with the rule that decided."""
        lines = [
            f"{self.root}: {self.n_files} files, {sum(len(v) for v in self.series.values())} DICOM images in "
            f"{len(self.series)} series, {self.n_non_dicom} non-DICOM, {self.n_non_image} DICOM without pixels, "
            f"{self.n_duplicates} duplicate files, {self.n_localizers} localizer images, "
            f"{self.n_no_geometry} images without geometry, {len(self.filtered)} series ignored by the series filter"
        ]
        for path, why in sorted(self.broken.items()):
            lines.append(f"  file {path}: {why}")
        if self.recorded:
            lines.append(f"  recorded series UIDs: {', '.join(self.recorded)}")
        if self.filter_fallback:
            lines.append(f"  series filter not applied: rule(s) {', '.join(self.filter_fallback)} would remove part "
                         "of the dynamic (see the series below)")
        for study in self.ignored_studies:
            lines.append(f"  study {study}: ignored (a later study of the patient; only the first is converted)")
        for row in self.rows():
            uid = row["series_uid"]
            if row["kept"]:
                flag = f" -> phase {row['phase_index']} (rule {row['rule']}" + \
                    (f": {row['detail']})" if row["detail"] else ")")
            elif uid in self.filtered:
                flag = f" (ignored: series_filter rule {self.filtered[uid]})"
            elif uid in self.series_errors:
                flag = f" (ignored: {self.series_errors[uid]})"
            else:
                flag = f" (ignored: rule {row['rule']}" + (f": {row['detail']})" if row["detail"] else ")")
            lines.append(f"  series {uid} #{row['series_number']} '{row['description']}': {row['n_images']} images"
                         f"{flag}")
        t0 = self.phases[0].time if self.phases and self.phases[0].time is not None else None
        for i, ph in enumerate(self.phases):
            sp = ", ".join(f"{x:.4g}" for x in ph.spacing)
            dt = f"+{ph.time - t0:.0f} s" if ph.time is not None and t0 is not None else "time ?"
            lines.append(f"  phase {i}: series {ph.series_uid}, {ph.shape[0]}x{ph.shape[1]}x{ph.shape[2]} "
                         f"voxels, spacing [{sp}] mm, {dt}")
        return lines


def list_files(root: Path) -> list[Path]:
    """Every file under ``root`` in a stable order (sorted per folder), hidden files skipped."""
    if root.is_file():
        return [root]
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            if name.startswith("."):  # temp files of an interrupted copy, macOS metadata
                continue
            out.append(Path(dirpath) / name)
    return out


DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")


def broken_file(path: Path) -> str | None:
    """Why a file that is not readable DICOM may be a lost image (empty, cut before its header, or named
    like a DICOM file), else None (a README, a thumbnail: not DICOM at all)."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError as exc:
        return f"unreadable file: {exc.strerror or exc}"
    if size == 0:
        return "empty file (0 bytes)"
    if not head.strip(b"\x00"):
        return f"no DICOM header: the file starts with zero bytes only ({size} bytes; an unfinished copy?)"
    if size < 132 and len(head) > 128 and b"DICM".startswith(head[128:]):
        return f"truncated file: {size} bytes, cut before the DICOM header"
    if path.suffix.lower() in DICOM_SUFFIXES:
        return f"named like a DICOM file but not DICOM ({size} bytes)"
    return None


def read_images(root: str | Path, files: Iterable[Path] | None = None) -> Inventory:
    """The image series of a case folder (or of explicit files), with the counts of what was ignored."""
    from pydicom.errors import InvalidDicomError

    root = Path(root)
    if not root.exists():
        raise InputUnreadable("no such file or folder", str(root))
    inv = Inventory(root=root)
    by_series: dict[str, list[Slice]] = defaultdict(list)
    seen_sop: set[str] = set()
    for path in (list(files) if files is not None else list_files(root)):
        inv.n_files += 1
        try:
            s = read_header(path)
        except InvalidDicomError:
            why = broken_file(path)
            if why:
                inv.broken[str(path)] = why
            else:
                inv.n_non_dicom += 1
            continue
        if s is None:
            inv.n_non_image += 1
            continue
        if s.sop_uid:
            if s.sop_uid in seen_sop:
                inv.n_duplicates += 1
                log.debug("%s: repeats SOP instance %s; ignored", path, s.sop_uid)
                continue
            seen_sop.add(s.sop_uid)
        if s.is_localizer:
            inv.n_localizers += 1
            continue
        by_series[s.series_uid].extend(expand_frames(s) if s.n_frames > 1 else [s])
    inv.series = dict(by_series)
    if not by_series:
        raise DicomError(f"no DICOM images found ({inv.n_files} files, {inv.n_non_dicom} not DICOM, "
                         f"{inv.n_localizers} localizers)", str(root))
    return inv
