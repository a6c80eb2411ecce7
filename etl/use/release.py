"""Python API for people who use a release (notebooks, training scripts).

    >>> from etl import open_release
    >>> rel = open_release("releases/mama-mia-1.0.0")
    >>> rel.table                                    # typed pandas DataFrame, one row per case (+ split)
    >>> her2_pcr = rel.cases(where="her2 == 1 and pcr == 1")   # rows + absolute image / mask paths
    >>> img = rel.image("DUKE_001", 1)               # nibabel image of the first post-contrast phase
    >>> mask = rel.mask("DUKE_001")                  # the expert mask; kind="automatic" or "any" to say otherwise
    >>> case = rel.load_case("DUKE_001")             # phases as one 4-D array + affine + mask
    >>> train, val = rel.split("train", fold=0), rel.split("val", fold=0)   # fold 0's training / validation cases

Filtering uses pandas expressions on the canonical columns; a comparison with a missing value is false
(``pcr == 1`` never selects a case whose pcr is unknown).
"""

from __future__ import annotations

import json
import logging
import numbers
from functools import cached_property
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from etl.errors import EtlError, InputUnreadable, ValidationFailed
from etl.contracts import PROVENANCE, SPLITS, TABLE
from etl.layout import Layout

from etl.types import AffineRAS, StrPath

if TYPE_CHECKING:
    import nibabel as nib
    import numpy as np

log = logging.getLogger("etl.release.api")

PATH_COLUMNS = ("image_paths", "expert_mask_path", "automatic_mask_path", "mask_path", "patient_info_path")
MASK_KINDS = ("expert", "automatic", "any")
SPLITS_NAMES = ("train", "val", "test")


class UnknownPatient(EtlError, KeyError):
    """A patient id that is not a case of the release (a ``KeyError`` too, as a lookup miss is)."""

    exit_code = 2

    def __str__(self) -> str:  # KeyError would quote the message
        return self.message


@dataclass(frozen=True)
class CaseArrays:
    """One case in memory: ``image`` is (x, y, z, phase) in the release orientation, ``affine`` its voxel ->
    world (RAS+ mm, as nibabel gives it), ``mask`` (x, y, z) uint8 or None, ``mask_kind`` which mask it is."""

    patient_id: str
    image: np.ndarray
    affine: AffineRAS
    mask: np.ndarray | None
    mask_kind: str | None
    phases: tuple[int, ...]


class Release:
    """A built release directory, opened read-only."""

    def __init__(self, root: StrPath) -> None:
        self.root = Path(root).resolve()
        if not (self.root / TABLE).is_file():
            raise InputUnreadable(f"not a release directory (no {TABLE})", str(self.root))
        self.layout = Layout.from_recorded(self.root, dict(self.provenance.get("definition") or {}))

    def __repr__(self) -> str:
        rel = self.provenance.get("release", {})
        return f"Release({rel.get('name', '?')}-{rel.get('version', '?')}, {len(self.table)} cases, {self.root})"

    @cached_property
    def provenance(self) -> dict[str, Any]:
        try:
            return json.loads((self.root / PROVENANCE).read_text())
        except (OSError, ValueError):
            return {}

    @cached_property
    def table(self) -> pd.DataFrame:
        """The typed table (49 variables + split + fold), one row per case, sorted by patient_id.

        Numbers are nullable (``Int64``, ``Float64``), lists are Python lists (``acquisition_times``:
        ``[0, 584, 714]`` seconds, ``pixel_spacing``: ``[0.7031, 0.7031]``) and dates ``datetime64``, as the
        Parquet stores them; ``text_table`` has the v1 published text forms instead."""
        import pyarrow.parquet as pq

        from etl.validate.schema import load_schema

        df = self.text_table.copy()
        typed = pq.read_table(self.root / TABLE)
        order = {pid: i for i, pid in enumerate(typed.column("patient_id").to_pylist())}
        rows = [order[pid] for pid in df["patient_id"].astype(str)]
        for name, fmt in load_schema().formats().items():
            if name not in df.columns or name not in typed.column_names:
                continue
            values = typed.column(name).take(rows)
            if fmt in ("list_float", "list_int"):
                df[name] = pd.Series(values.to_pylist(), index=df.index, dtype=object)
            elif fmt == "date":
                df[name] = pd.to_datetime(pd.Series(values.to_pylist(), index=df.index))
        return df

    @cached_property
    def text_table(self) -> pd.DataFrame:
        """The table in the canonical text form of the v1 drop-in (lists ``"[0, 584, 714]"``, dates
        ``"yyyy/mm/dd"``): what ``mamamia query`` prints and what the xlsx holds."""
        from etl.release.tableio import read_table
        from etl.split import read_split

        df = read_table(self.root / TABLE)
        if (self.root / SPLITS).exists():
            sp = read_split(self.root / SPLITS)[["patient_id", "split", "fold"]]
            df = df.drop(columns=[c for c in ("split", "fold") if c in df.columns]).merge(sp, on="patient_id", how="left")
            df["split"] = df["split"].astype("string")
        return df.reset_index(drop=True)

    @cached_property
    def patient_ids(self) -> frozenset[str]:
        return frozenset(self.text_table["patient_id"].astype(str))

    def _check_patient(self, patient_id: str) -> str:
        """The id if it is a case of this release; otherwise the one-line error a user can act on."""
        pid = str(patient_id)
        if pid not in self.patient_ids:
            import difflib

            close = difflib.get_close_matches(pid.upper(), sorted(self.patient_ids), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise UnknownPatient(f"unknown patient {pid}{hint}", str(self.root))
        return pid

    def paths(self, patient_id: str) -> dict[str, Any]:
        """Absolute paths of one case's files (None for a mask the case does not have). ``mask_path`` is the
        expert mask when there is one, else the automatic one: check ``expert_mask_path`` to tell them apart."""
        expert = self.layout.expert_mask(patient_id)
        automatic = self.layout.automatic_mask(patient_id)
        mask = expert if expert.exists() else (automatic if automatic.exists() else None)
        return {
            "image_paths": [str(p) for p in self.layout.images(patient_id)],
            "expert_mask_path": str(expert) if expert.exists() else None,
            "automatic_mask_path": str(automatic) if automatic.exists() else None,
            "mask_path": str(mask) if mask else None,
            "patient_info_path": str(self.layout.patient_info(patient_id)),
        }

    def with_paths(self, df: pd.DataFrame | None = None) -> pd.DataFrame:
        """Rows of ``df`` (default: all) with the path columns appended."""
        df = self.table if df is None else df
        extra = pd.DataFrame([self.paths(pid) for pid in df["patient_id"].astype(str)], index=df.index,
                             columns=list(PATH_COLUMNS))
        return pd.concat([df, extra], axis=1)

    def cases(self, where: str | None = None) -> pd.DataFrame:
        """Rows matching a boolean expression (``"her2 == 1 and pcr == 1"``), with absolute file paths.

        Same semantics as ``mamamia query --where`` (one engine, DuckDB): missing values never match.
        """
        from etl.use.query import filter_cases, literal_hints

        df = self.table
        if where:  # the expression runs on the text form (one engine with `mamamia query`); rows come typed
            hits = set(filter_cases(self.text_table, where)["patient_id"].astype(str))
            df = df[df["patient_id"].astype(str).isin(hits)]
            for hint in literal_hints(self.text_table, where):
                log.warning("%s", hint)
        return self.with_paths(df).reset_index(drop=True)

    def split(self, name: str, fold: int | None = None) -> pd.DataFrame:
        """Rows of one part of the split, with paths.

        ``split("train")``: every training case; ``split("train", fold=k)``: the cases fold k trains on
        (training cases not in fold k); ``split("val", fold=k)``: fold k's validation cases;
        ``split("test")``: the held-out test cases. Same folds as the release's ``splits_final.json``."""
        if name not in SPLITS_NAMES:
            raise ValidationFailed(f"split must be one of {', '.join(SPLITS_NAMES)}, got {name!r}", "split")
        table = self.table
        train = table[table["split"] == "train"]
        if fold is not None:
            folds = sorted(int(f) for f in train["fold"].dropna().unique())
            if name == "test":
                raise ValidationFailed("the test split has no folds; use split('test')", "fold")
            if isinstance(fold, bool) or not isinstance(fold, numbers.Integral) or int(fold) not in folds:
                raise ValidationFailed(f"no fold {fold!r} in this release (folds: {', '.join(map(str, folds))})", "fold")
        if name == "test":
            df = table[table["split"] == "test"]
        elif name == "val":
            if fold is None:
                raise ValidationFailed("split('val') needs a fold: split('val', fold=k)", "fold")
            df = train[train["fold"] == fold]
        else:
            df = train if fold is None else train[train["fold"] != fold]
        return self.with_paths(df).reset_index(drop=True)

    def image(self, patient_id: str, phase: int = 0) -> nib.Nifti1Image:
        """A phase as a nibabel image (0 = pre-contrast)."""
        pid = self._check_patient(patient_id)
        path = self.layout.image(pid, phase)
        if not path.exists():
            n = len(self.layout.images(pid))
            have = f"it has phases 0-{n - 1}" if n else "it has no image files"
            raise InputUnreadable(f"no phase {phase} for {pid} ({have})", str(path))
        return _load_nifti(path)

    def mask_path(self, patient_id: str, kind: str = "expert") -> tuple[Path, str]:
        """Path and kind of a case's mask. ``expert`` (default) and ``automatic`` are exactly that mask, an
        error when the case lacks it; ``any`` is the expert mask, else the automatic one, and says which."""
        pid = self._check_patient(patient_id)
        if kind not in MASK_KINDS:
            raise ValidationFailed(f"mask kind must be one of {', '.join(MASK_KINDS)}, got {kind!r}", "kind")
        candidates = {"expert": ["expert"], "automatic": ["automatic"], "any": ["expert", "automatic"]}[kind]
        for k in candidates:
            path = self.layout.expert_mask(pid) if k == "expert" else self.layout.automatic_mask(pid)
            if path.exists():
                return path, k
        other = "automatic" if kind == "expert" else "expert"
        hint = f"; kind='{other}' or kind='any' to use another" if kind != "any" else ""
        raise InputUnreadable(f"no {'' if kind == 'any' else kind + ' '}mask for {pid}{hint}",
                              str(self.layout.expert_mask(pid) if kind != "automatic" else self.layout.automatic_mask(pid)))

    def mask(self, patient_id: str, kind: str = "expert") -> nib.Nifti1Image:
        """The case's mask as a nibabel image; which one it is is in ``img.extra["mask_kind"]``.

        Default: the expert mask, and an error when the case has none (a study must not mix model and
        expert masks without knowing); ``kind="automatic"``; ``kind="any"``: expert, else automatic."""
        path, which = self.mask_path(patient_id, kind)
        img = _load_nifti(path)
        img.extra["mask_kind"] = which
        return img

    def load_case(self, patient_id: str, phases: list[int] | None = None, mask: str | None = "expert") -> CaseArrays:
        """All (or the chosen) phases as one 4-D array (x, y, z, phase) with the affine and the mask.

        ``mask``: ``expert`` (default; an error when absent), ``automatic``, ``any`` (see ``mask_kind``), or
        None for no mask. Phases and mask must share one grid: a case whose files disagree is refused."""
        import numpy as np

        pid = self._check_patient(patient_id)
        wanted = list(range(len(self.layout.images(pid)))) if phases is None else [int(p) for p in phases]
        if not wanted:
            raise InputUnreadable(f"no image files for {pid}", str(self.layout.image(pid, 0).parent))
        imgs = [self.image(pid, p) for p in wanted]
        affine = imgs[0].affine
        for p, img in zip(wanted, imgs):
            if img.shape[:3] != imgs[0].shape[:3] or not np.allclose(img.affine, affine, atol=1e-4):
                raise ValidationFailed(f"phase {p} of {pid} is not on the grid of phase {wanted[0]}",
                                       str(self.layout.image(pid, p)))
        arrays = [np.asanyarray(img.dataobj) for img in imgs]
        image = np.stack(arrays, axis=-1).astype(np.result_type(*arrays), copy=False)
        mask_array = kind = None
        if mask is not None:
            path, kind = self.mask_path(pid, mask)
            m = _load_nifti(path)
            if m.shape[:3] != imgs[0].shape[:3] or not np.allclose(m.affine, affine, atol=1e-4):
                raise ValidationFailed(f"the {kind} mask of {pid} is not on the image grid", str(path))
            mask_array = np.asanyarray(m.dataobj).astype(np.uint8)
        return CaseArrays(pid, image, affine, mask_array, kind, tuple(wanted))

    def nnunet_case_id(self, patient_id: str) -> str:
        """The case identifier the release's ``splits_final.json`` uses (split.nnunet_case_id template)."""
        return self.layout.case_id(str(patient_id))

    def patient_info(self, patient_id: str) -> dict[str, Any]:
        return json.loads(self.layout.patient_info(self._check_patient(patient_id)).read_text())


def _load_nifti(path: Path) -> nib.Nifti1Image:
    import nibabel as nib

    img = nib.load(str(path))
    if not isinstance(img, nib.Nifti1Image):  # NIfTI-2 is a subclass
        raise InputUnreadable(f"not a NIfTI image ({type(img).__name__})", str(path))
    return img


def open_release(path: StrPath) -> Release:
    """Open a release directory built by ``mamamia release build``."""
    return Release(path)


def is_release(path: StrPath) -> bool:
    p = Path(path)
    return p.is_dir() and (p / TABLE).is_file()


def table_with_paths(path: StrPath) -> pd.DataFrame:
    """The release table with absolute path columns (``mamamia query`` on a release uses this)."""
    rel = open_release(path)
    df = rel.with_paths(rel.text_table)
    # lists are awkward in CSV/SQL: give the phase files as one ';'-joined text column as well
    df["image_paths"] = df["image_paths"].map(lambda ps: ";".join(ps))
    return df
