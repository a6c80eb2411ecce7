"""Which cases an export holds, with which phase files and which mask: one selection for every layout.

A training case needs every requested phase and a mask of the requested kind (``expert`` by default, so a
model is never trained on a mix of expert and model masks without the user asking for it); a case that
lacks one is left out with its reason, never silently. Test cases need the phases only.
"""

from __future__ import annotations

import errno
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from etl.errors import EtlError
from etl.use.release import MASK_KINDS, Release


class ExportError(EtlError):
    """The export cannot be written as asked (output conflict, no usable case); nothing is left half-written."""

    exit_code = 2


@dataclass(frozen=True)
class ExportCase:
    patient_id: str
    case_id: str  # the identifier of the release's splits_final.json (split.nnunet_case_id template)
    split: str  # train | test
    fold: int | None
    images: tuple[Path, ...]  # the chosen phases, in --phases order (channel k = images[k])
    label: Path | None
    label_kind: str | None


@dataclass
class Selection:
    phases: tuple[int, ...]
    masks: str
    cases: list[ExportCase] = field(default_factory=list)
    left_out: dict[str, str] = field(default_factory=dict)  # patient_id -> why

    @property
    def train(self) -> list[ExportCase]:
        return [c for c in self.cases if c.split == "train"]

    @property
    def test(self) -> list[ExportCase]:
        return [c for c in self.cases if c.split == "test"]


def parse_phases(text: str) -> tuple[int, ...]:
    """``"0,1"`` -> (0, 1): distinct non-negative phase numbers, in the order given (the channel order)."""
    try:
        phases = tuple(int(p) for p in str(text).split(",") if p.strip())
    except ValueError as exc:
        raise ExportError(f"--phases must be comma-separated phase numbers such as 0,1, got {text!r}", "--phases") from exc
    if not phases or any(p < 0 for p in phases) or len(set(phases)) != len(phases):
        raise ExportError(f"--phases must be distinct phase numbers >= 0 such as 0,1, got {text!r}", "--phases")
    return phases


def select_cases(rel: Release, phases: tuple[int, ...], masks: str = "expert") -> Selection:
    """Every train and test case of the release that has the phases (and, for training, the mask) asked for."""
    if masks not in MASK_KINDS:
        raise ExportError(f"--masks must be one of {', '.join(MASK_KINDS)}, got {masks!r}", "--masks")
    sel = Selection(phases, masks)
    table = rel.table
    for row in table.itertuples(index=False):
        pid, split = str(row.patient_id), str(row.split)
        if split not in ("train", "test"):
            sel.left_out[pid] = "not in the release's split"
            continue
        images = [rel.layout.image(pid, p) for p in phases]
        absent = [p for p, path in zip(phases, images) if not path.exists()]
        if absent:
            n = len(rel.layout.images(pid))
            sel.left_out[pid] = f"no phase {', '.join(map(str, absent))} (it has {n})"
            continue
        label = kind = None
        try:
            label, kind = rel.mask_path(pid, masks)
        except EtlError:
            if split == "train":
                sel.left_out[pid] = f"no {'' if masks == 'any' else masks + ' '}mask"
                continue
        fold = None if split == "test" else _fold(row.fold)
        sel.cases.append(ExportCase(pid, rel.nnunet_case_id(pid), split, fold, tuple(images), label, kind))
    if not sel.train:
        raise ExportError(f"no training case has phase(s) {','.join(map(str, phases))} and a mask of kind {masks!r}",
                          str(rel.root))
    return sel


def _missing(value: object) -> bool:
    try:
        return value is None or value != value or str(value) == "<NA>"
    except (TypeError, ValueError):
        return True


def _fold(value: object) -> int | None:
    """The fold number in a table cell (an int, a float such as 2.0, or its text); None when missing."""
    if _missing(value):
        return None
    if isinstance(value, (int, float, np.integer, np.floating)):
        return int(value)
    return int(str(value))


def link_or_copy(src: Path, dst: Path, link: bool = True) -> str:
    """Hard-link ``src`` to ``dst`` (same bytes, no extra disk) when asked and possible, else copy.
    Returns ``"link"`` or ``"copy"``. A hard link shares the release's file: training tools only read it."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if link:
        try:
            os.link(src, dst)
            return "link"
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EACCES):
                raise
    shutil.copyfile(src, dst)
    return "copy"
