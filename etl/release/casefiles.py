"""Step 2 of ``release build``, the case files: phases and masks copied byte for byte (or hard-linked),
``patient_info_files/<id>.json`` per case, and the per-case QC rows when no staged QC table is carried over.

Every copied file's sha256 is computed while copying (``known``), so the checksum step never re-reads an
image; the listing of what was read from each staged directory goes into provenance.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from etl.errors import InputUnreadable
from etl.hashing import sha256_file
from etl.release.definition import ReleaseDefinition
from etl.release.inputs import ReleaseInputs

_CHUNK = 1 << 20


@dataclass
class CaseFiles:
    """What the case step wrote: digests by release-relative path, and what was read from each staged root."""

    known: dict[str, str] = field(default_factory=dict)
    staged_entries: dict[Path, list[tuple[str, str]]] = field(default_factory=dict)
    images: int = 0
    expert_masks: int = 0
    automatic_masks: int = 0
    info_merged: int = 0  # patient_info files merged from staged ones
    qc_rows: list[dict[str, Any]] = field(default_factory=list)


def write_case_files(defn: ReleaseDefinition, inp: ReleaseInputs, tmp: Path, link: bool) -> CaseFiles:
    """Copy every case's images and masks into ``tmp`` and write its patient info (see the module docstring)."""
    import nibabel as nib

    from etl.contracts import imaging_variables
    from etl.progress import track
    from etl.release import patient_info, qc

    files = CaseFiles(staged_entries={root: [] for root in defn.staged})
    img_cols = imaging_variables()
    target = defn.layout(tmp)
    rows = cast(list[dict[str, Any]], inp.table.to_dict("records"))
    for row in track(rows, "release: cases", total=len(rows)):
        pid = str(row["patient_id"])
        case = inp.cases[pid]
        for phase, src in enumerate(case.images):
            dst = target.image(pid, phase)
            digest = copy_file(src, dst, link)
            files.known[dst.relative_to(tmp).as_posix()] = digest
            files.staged_entries.setdefault(case.root, []).append((src.relative_to(case.root).as_posix(), digest))
            files.images += 1
        masks: dict[str, Any] = {}
        for kind, mask_src, dst in (("expert", case.expert, target.expert_mask(pid)),
                                    ("automatic", case.automatic, target.automatic_mask(pid))):
            if mask_src is None:
                continue
            digest = copy_file(mask_src, dst, link)
            files.known[dst.relative_to(tmp).as_posix()] = digest
            root = next(r for r in defn.staged if mask_src.is_relative_to(r))
            files.staged_entries.setdefault(root, []).append((mask_src.relative_to(root).as_posix(), digest))
            masks[kind] = patient_info.load_mask(dst)
            files.expert_masks += kind == "expert"
            files.automatic_masks += kind == "automatic"
        first: Any = nib.load(str(target.image(pid, 0)))  # a Nifti1Image (the staged files are NIfTI-1)
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
            files.info_merged += 1
        write_text_file(target.patient_info(pid), patient_info.dumps(doc))
        if masks and inp.staged_qc is None:
            sx, sy, sz = (float(z) for z in header.get_zooms()[:3])
            spacing = (sx, sy, sz)
            files.qc_rows.append(qc.case_row(pid, spacing, masks.get("automatic"), masks.get("expert")))
    return files


def copy_file(src: Path, dst: Path, link: bool) -> str:
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


def write_text_file(path: Path, text: str) -> None:
    """A UTF-8 text file inside the build's temporary directory (atomic as a whole: ``atomic_dir``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
