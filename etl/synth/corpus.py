"""A synthetic multi-case corpus in TCIA's download shape, plus the ground truth later stages check against.

``write_corpus`` writes ``<root>/<tcia_collection>/<tcia_patient_id>/<SeriesInstanceUID>/*.dcm`` (what an
NBIA download unzips to) and, outside that tree, each case's lesion mask as NIfTI in the converted
orientation (``<truth>/segmentations/expert/{patient_id}.nii.gz`` by the release naming), usable as the
expert segmentation of the converted case. ``spec_from_row`` drives a study from a v1 table row so
header extraction can be checked as a round trip.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from etl.synth.dicom import StudySpec, StudyTruth, write_study

COLLECTIONS = {  # dataset -> TCIA collection
    "DUKE": "Duke-Breast-Cancer-MRI",
    "ISPY1": "ISPY1",
    "ISPY2": "ISPY2",
    "NACT": "Breast-MRI-NACT-Pilot",
}

# v1 imaging columns a study can carry in its headers (geometry and phases come from the spec itself).
HEADER_COLUMNS = ("manufacturer", "scanner_model", "field_strength", "echo_time", "repetition_time", "high_bit",
                  "slice_thickness", "window_center", "window_width", "site", "acquisition_date", "weight",
                  "patient_size", "fat_suppressed", "bilateral_mri", "tcia_series_uid")
_VENDOR_OF = {"GE": "GE", "SIEMENS": "SIEMENS", "PHILIPS": "Philips"}


@dataclass
class CorpusCase:
    """Where one written case is and what it should convert to."""

    patient_id: str
    dataset: str
    tcia_collection: str
    tcia_patient_id: str
    folder: Path
    series_uids: list[str]
    mask_path: Path | None
    truth: StudyTruth


def tcia_patient_id(patient_id: str) -> str:
    """TCIA's patient id for a MAMA-MIA id (the shapes used by the four collections)."""
    ds, _, num = patient_id.partition("_")
    ds = ds.upper()
    if ds == "DUKE":
        return f"Breast_MRI_{num}"
    if ds == "ISPY2":
        return f"ISPY2-{num}"
    if ds == "NACT":
        return f"UCSF-BR-{num}"
    return patient_id


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or type(v).__name__ == "NAType"


def _parse_list(text: Any, kind: type) -> list[Any] | None:
    if _missing(text):
        return None
    if isinstance(text, (list, tuple, np.ndarray)):
        return [kind(x) for x in text]
    try:
        return [kind(float(x)) if kind is int else kind(x) for x in str(text).strip().strip("[]").split(",")]
    except ValueError:
        return None


def spec_from_row(row: Any, full_geometry: bool = False, **overrides: Any) -> StudySpec:
    """A study whose headers carry a v1 row's imaging values (phases/times too when they parse).

    With ``full_geometry`` the matrix, slice count and spacing are the row's as well (large); otherwise
    the study stays small (64x64x24) and only header-level variables round-trip.
    """
    def get(key: str) -> Any:
        return row.get(key) if hasattr(row, "get") else getattr(row, key, None)

    headers: dict[str, Any] = {}
    for col in HEADER_COLUMNS:
        v = get(col)
        if not _missing(v):
            if col in ("high_bit", "fat_suppressed", "bilateral_mri"):
                v = int(v)
            elif col in ("site", "scanner_model", "manufacturer", "acquisition_date", "tcia_series_uid"):
                v = str(v).strip()
            else:
                v = float(v)
            headers[col] = v
        elif col not in ("manufacturer", "scanner_model", "high_bit", "tcia_series_uid"):
            headers[col] = None
    manu = str(get("manufacturer") or "GE").strip().upper()
    vendor = _VENDOR_OF.get(manu, "GE")
    times = _parse_list(get("acquisition_times"), int)
    n_phases = int(get("num_phases") or 3)
    consistent = times is not None and len(times) == n_phases and times[0] == 0 and len(set(times)) == len(times)
    if times is None or not consistent or sorted(times) != times:
        times = None  # the table's unparsable or inconsistent lists: let the phantom choose
    pid = str(get("patient_id") or "SYN_001").strip()
    kwargs: dict[str, Any] = dict(
        patient_id=pid,
        tcia_patient_id=tcia_patient_id(pid),
        dataset=str(get("dataset") or pid.partition("_")[0]),
        vendor=vendor,
        view=str(get("view") or "axial").strip(),
        n_phases=n_phases,
        bilateral=bool(headers.get("bilateral_mri", 1)),
        fat_suppressed=bool(headers.get("fat_suppressed", 1) if headers.get("fat_suppressed") is not None else 1),
        headers=headers,
        acquisition_times=tuple(times) if times else None,
        layout="single_series" if vendor != "GE" else "per_phase",
    )
    if full_geometry:
        spacing = _parse_list(get("pixel_spacing"), float) or [0.7, 0.7]
        kwargs.update(matrix=(int(get("image_rows")), int(get("image_columns"))), n_slices=int(get("num_slices")),
                      pixel_spacing=(spacing[0], spacing[-1]))
        if not _missing(get("slice_thickness")):
            kwargs["slice_spacing"] = float(get("slice_thickness"))
    kwargs.update(overrides)
    return StudySpec(**kwargs)


def _as_spec(case: StudySpec | Mapping[str, Any]) -> StudySpec:
    if isinstance(case, StudySpec):
        return case
    names = {f.name for f in fields(StudySpec)}
    unknown = set(case) - names - {"tcia_collection"}
    if unknown:
        raise ValueError(f"unknown case keys: {sorted(unknown)}")
    spec = StudySpec(**{k: v for k, v in case.items() if k in names})
    if spec.tcia_patient_id is None:
        from dataclasses import replace

        spec = replace(spec, tcia_patient_id=tcia_patient_id(spec.patient_id))
    return spec


def profile_axcodes(profile: str, view: str) -> str:
    """Axis codes a converted image of ``view`` has under ``profile``, read from the shipped schema file."""
    import yaml

    from etl.resources import data_path

    profiles = yaml.safe_load(data_path("schemas/imaging_headers.yaml").read_text())["profiles"]
    return str(profiles[profile][view])


def write_mask(path: str | Path, truth: StudyTruth, profile: str | None = "mama-mia-v1") -> Path:
    """The case's lesion mask as NIfTI, on the converted grid and orientation of its phases.

    Written with nibabel alone (never the product's NIfTI writer), so the ground truth the converter and
    the segmentation stage are checked against cannot share a bug with them: the (c, r, k) grid's LPS
    affine becomes RAS, then nibabel permutes/flips the array to the profile's axis codes (no resampling).
    """
    from nibabel.orientations import axcodes2ornt, io_orientation, ornt_transform

    path = Path(path)
    affine_ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ truth.grid_affine
    img = nib.Nifti1Image(np.ascontiguousarray(truth.mask, dtype=np.uint8), affine_ras)
    if profile:
        normal = np.cross(truth.grid_affine[:3, 0], truth.grid_affine[:3, 1])  # slice normal picks the view
        view = ("sagittal", "coronal", "axial")[int(np.argmax(np.abs(normal)))]
        codes = profile_axcodes(profile, view)
        img = img.as_reoriented(ornt_transform(io_orientation(affine_ras), axcodes2ornt(tuple(codes))))
    img.set_data_dtype(np.uint8)
    img.set_qform(img.affine, code=1)
    img.set_sform(img.affine, code=1)
    img.header.set_xyzt_units("mm", "sec")
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, str(path))  # .nii.gz: nibabel gzips it
    return path


def write_corpus(root: str | Path, cases: Sequence[StudySpec | Mapping[str, Any]], seed: int = 0,
                 profile: str | None = "mama-mia-v1", truth_dir: str | Path | None = None) -> dict[str, CorpusCase]:
    """Write every case under ``root`` in TCIA's shape and its mask under ``truth_dir``.

    ``cases`` are StudySpecs or dicts of StudySpec fields (``patient_id`` required; ``dataset``,
    ``tcia_collection``, ``tcia_patient_id``, ``vendor``, ``view``, ``layout``, ... optional). A case's
    seed is ``seed`` + its position, so adding a case does not change the others. ``truth_dir`` defaults to
    ``<root>/../<root name>_truth``; masks are written with the release naming (``Layout.expert_mask``).
    """
    from etl.layout import Layout

    root = Path(root)
    truth_root = Path(truth_dir) if truth_dir else root.parent / f"{root.name}_truth"
    layout = Layout.from_definition(truth_root)
    out: dict[str, CorpusCase] = {}
    for i, case in enumerate(cases):
        collection = case.get("tcia_collection") if isinstance(case, Mapping) else None
        spec = _as_spec(case)
        dataset = spec.dataset if spec.dataset != "SYN" else spec.patient_id.partition("_")[0].upper()
        collection = collection or COLLECTIONS.get(dataset, dataset)
        folder = root / collection / str(spec.tcia_patient_id)
        truth = write_study(folder, spec, seed + i)
        mask_path = write_mask(layout.expert_mask(spec.patient_id), truth, profile) if profile else None
        out[spec.patient_id] = CorpusCase(spec.patient_id, dataset, collection, str(spec.tcia_patient_id), folder,
                                          truth.series_uids, mask_path, truth)
    return out


def default_cases(n: int = 4) -> list[dict[str, Any]]:
    """A small mixed corpus: every vendor, both views, both layouts, one unilateral non-fat-suppressed case."""
    plan: list[dict[str, Any]] = [
        dict(patient_id="DUKE_001", vendor="GE", view="axial", layout="per_phase"),
        dict(patient_id="DUKE_002", vendor="SIEMENS", view="axial", layout="single_series", oblique_deg=3.0),
        dict(patient_id="ISPY1_1001", vendor="GE", view="sagittal", layout="single_series", bilateral=False,
             n_phases=3),
        dict(patient_id="ISPY2_100899", vendor="Philips", view="axial", layout="single_series", bilateral=False),
        dict(patient_id="NACT_01", vendor="GE", view="sagittal", layout="per_phase", bilateral=False, n_phases=3,
             fat_suppressed=False),
        dict(patient_id="ISPY2_102011", vendor="SIEMENS", view="axial", layout="per_phase"),
    ]
    return [{**c, "dataset": str(c["patient_id"]).partition("_")[0]} for c in plan[:n]]
