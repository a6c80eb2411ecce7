"""The cases to review, from a staged directory or a built release (one loader for both).

Both are the same layout (``images/{PATIENT_ID}/{patient_id}_{phase:04d}.nii.gz``,
``segmentations/automatic/``, ``segmentations/expert/``, ``patient_info_files/``); a release names its
files with the templates recorded in its provenance, a staged directory with the release definition's
(default: the shipped v1). A case is reviewable when it has an automatic mask.

Where derived files go: a staged directory is a work area, so its review cache is ``STAGED/review/``; a
release is checksummed (every file listed in SHA256SUMS), so its cache sits beside it, ``RELEASE.review/``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from etl.contracts import QC, REVIEW_CACHE_SUFFIX, SEGMENTATION_METHODS
from etl.errors import InputUnreadable
from etl.layout import Layout
from etl.hashing import sha256_file
from etl.types import StrPath

PRE_PHASE = 0
POST_PHASE = 1  # the first post-contrast phase: what MAMA-MIA's raters looked at
PATIENT_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")  # ids that may appear in URLs and file names


@dataclass(frozen=True)
class ReviewCase:
    """One case's files (absolute paths; ``None`` when the case does not have that file)."""

    patient_id: str
    dataset: str
    phases: tuple[Path, ...]
    automatic: Path | None
    expert: Path | None
    patient_info: Path | None

    @property
    def pre(self) -> Path | None:
        return self.phases[PRE_PHASE] if len(self.phases) > PRE_PHASE else None

    @property
    def post(self) -> Path | None:
        """The first post-contrast phase (phase 0001); a one-phase case has none."""
        return self.phases[POST_PHASE] if len(self.phases) > POST_PHASE else None


@dataclass
class CaseSet:
    """The reviewable cases of a staged directory or release, sorted by patient id."""

    root: Path
    kind: str  # "staged" | "release"
    layout: Layout
    cases: list[ReviewCase]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (patient_id, why it cannot be reviewed)

    def __len__(self) -> int:
        return len(self.cases)

    def ids(self) -> list[str]:
        return [c.patient_id for c in self.cases]

    def get(self, patient_id: str) -> ReviewCase | None:
        """The case, or None for an unknown (or malformed) id: callers answer 404, never build a path."""
        if not PATIENT_ID_RE.match(patient_id or ""):
            return None
        return self._by_id.get(patient_id)

    @property
    def _by_id(self) -> dict[str, ReviewCase]:
        cached = self.__dict__.get("_index")
        if cached is None or len(cached) != len(self.cases):
            cached = {c.patient_id: c for c in self.cases}
            self.__dict__["_index"] = cached
        return cached

    def cache_dir(self) -> Path:
        """Default folder of the rendered views (see the module docstring)."""
        if self.kind == "release":
            return self.root.with_name(self.root.name + REVIEW_CACHE_SUFFIX)
        return self.root / "review"

    def qc(self) -> dict[str, dict[str, Any]]:
        """Per case what a non-blind rater may see: method, mask volume, lesion count, Dice/HD95 vs an expert
        mask (from ``segmentation_qc.parquet`` and ``segmentation_methods.json`` when present)."""
        return read_qc(self.root)


def dataset_of(patient_id: str) -> str:
    """The collection prefix of a patient id (``DUKE_001`` -> ``DUKE``)."""
    return patient_id.rsplit("_", 1)[0].upper() if "_" in patient_id else patient_id.upper()


def load_cases(path: StrPath, definition: StrPath | None = None, require_automatic: bool = True) -> CaseSet:
    """Open a staged directory or a release and list its cases (with an automatic mask unless
    ``require_automatic`` is False). Case folders that are not usable are listed in ``skipped``."""
    from etl.segment.io import scan_cases
    from etl.use.release import is_release, open_release

    root = Path(path).resolve()
    if not root.is_dir():
        raise InputUnreadable("not a directory", str(path))
    datasets: dict[str, str] = {}
    if is_release(root):
        rel = open_release(root)
        layout, kind = rel.layout, "release"
        try:
            table = rel.text_table
            datasets = dict(zip(table["patient_id"].astype(str), table["dataset"].astype(str)))
        except Exception:  # a damaged table: the id prefix still names the collection
            datasets = {}
    else:
        layout, kind = Layout.from_definition(root, definition), "staged"
    found, unusable = scan_cases(layout)
    cases, skipped = [], [(pid, exc.message) for pid, exc in unusable]
    for c in found:
        if not PATIENT_ID_RE.match(c.patient_id):
            skipped.append((c.patient_id, "patient id has characters not allowed in a case id"))
            continue
        automatic = c.automatic if c.automatic.exists() else None
        if automatic is None and require_automatic:
            continue
        info = layout.patient_info(c.patient_id)
        cases.append(ReviewCase(c.patient_id, datasets.get(c.patient_id) or dataset_of(c.patient_id), c.phases,
                                automatic, c.expert if c.expert.exists() else None, info if info.is_file() else None))
    return CaseSet(root, kind, layout, sorted(cases, key=lambda c: c.patient_id), skipped)


def lesion_box_centre(case: ReviewCase, key: str = "lesion_box") -> tuple[float, float, float] | None:
    """Centre of the lesion box in the patient info file (voxel indices of the image array), if any.

    Same convention as the FTV stage: ``{key: [[i0, i1], [j0, j1], [k0, k1]]}``, end exclusive; a dotted
    key walks nested objects. An unreadable or malformed box is ignored (the image centre is used)."""
    if case.patient_info is None:
        return None
    try:
        node: Any = json.loads(case.patient_info.read_text())
        for part in key.split("."):
            node = node[part]
        bounds = [(float(lo), float(hi)) for lo, hi in node]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if len(bounds) != 3 or any(hi <= lo for lo, hi in bounds):
        return None
    (i0, i1), (j0, j1), (k0, k1) = bounds
    return (i0 + i1 - 1) / 2.0, (j0 + j1 - 1) / 2.0, (k0 + k1 - 1) / 2.0


class FileHashes:
    """sha256 of files, remembered per (path, size, mtime): a server asks for the current mask hash on every
    page without re-reading unchanged masks, and still sees a mask replaced while it runs."""

    def __init__(self) -> None:
        import threading

        self._seen: dict[str, tuple[int, int, str]] = {}
        self._lock = threading.Lock()  # the app's handlers run in a thread pool

    def sha256(self, path: Path) -> str:
        st = path.stat()
        key = str(path)
        with self._lock:
            hit = self._seen.get(key)
        if hit and hit[0] == st.st_size and hit[1] == st.st_mtime_ns:
            return hit[2]
        digest = sha256_file(path)
        with self._lock:
            self._seen[key] = (st.st_size, st.st_mtime_ns, digest)
        return digest


def read_qc(root: Path) -> dict[str, dict[str, Any]]:
    """QC facts per patient id from the segmentation stage's outputs (empty when there are none)."""
    import math

    out: dict[str, dict[str, Any]] = {}
    qc_file = root / QC
    if qc_file.is_file():
        try:
            import pandas as pd

            df = pd.read_parquet(qc_file)
            for row in df.to_dict("records"):
                clean = {str(k): (None if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)) else v)
                         for k, v in row.items()}
                out[str(row["patient_id"])] = clean
        except Exception:  # QC is optional context for a non-blind rater; never block the review on it
            out = {}
    try:
        methods = json.loads((root / SEGMENTATION_METHODS).read_text())
    except (OSError, ValueError):
        methods = {}
    if isinstance(methods, dict):
        for pid, sig in methods.items():
            if isinstance(sig, dict):
                out.setdefault(str(pid), {})["method"] = str(sig.get("method", ""))
    return out
