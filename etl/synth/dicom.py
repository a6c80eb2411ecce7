"""Seeded synthetic DCE-MRI DICOM studies written with pydicom from a phantom and a header spec.

Realistic enough that a converter bug shows: three vendor styles, axial or sagittal, one series per phase
or all phases in one series (slices interleaved, phases told apart by a vendor-specific tag), shuffled
file names, optional obliquity, rescale slope/intercept, and fake PHI the release must never carry;
``add_series`` puts other series beside the dynamic (bland T1, maps, subtractions) for the selection tests.

Coordinates: the study is built on a voxel grid ``(c, r, k)`` = (column, row, slice in increasing
position along the slice normal = row cosine x column cosine), with the LPS affine ``grid_affine``; that
is exactly what the converter must reconstruct before reorienting. The anatomical phantom (axes L, P, S)
is mapped onto that grid per view.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from etl.synth.phantom import Phantom, make_phantom

MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
UID_ROOT = "2.25."

# How each vendor writes its headers. Data, so adding a style is one entry.
VENDORS: dict[str, dict[str, Any]] = {
    "GE": {
        "Manufacturer": "GE MEDICAL SYSTEMS",
        "model": "Signa HDxt",
        "temporal_tag": "TemporalPositionIdentifier",  # phases in one series told apart by this tag
        "scan_options": ["FAST_GEMS", "EDR_GEMS"],
        "fs_option": "FS",
        "series_description": {True: "Ax Vibrant MultiPhase FS", False: "Ax Vibrant MultiPhase"},
        "rescale": None,
        "echo_time": 2.604,
        "repetition_time": 5.624,
        "high_bit": 15,
    },
    "SIEMENS": {
        "Manufacturer": "SIEMENS",
        "model": "Avanto",
        "temporal_tag": "AcquisitionNumber",
        "scan_options": ["PFP"],
        "fs_option": "FS",
        "series_description": {True: "ax dyn fl3d_fs", False: "ax dyn fl3d non-fs"},
        "rescale": None,
        "echo_time": 1.36,
        "repetition_time": 4.12,
        "high_bit": 11,
    },
    "Philips": {
        "Manufacturer": "Philips Medical Systems",
        "model": "Achieva",
        "temporal_tag": "TriggerTime",
        "scan_options": ["OTHER"],
        "fs_option": "FS",
        "series_description": {True: "DYN eTHRIVE SPAIR", False: "DYN eTHRIVE"},
        "rescale": (2.0, 0.0),  # Philips real-world rescale (integral here so integer output is kept)
        "echo_time": 2.3,
        "repetition_time": 4.6,
        "high_bit": 15,
    },
}

LAYOUTS = ("per_phase", "single_series")  # one series per phase | all phases interleaved in one series

# Direction cosines (LPS) of the row and column directions per view.
VIEWS = {
    "axial": ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0)),  # columns -> L, rows -> P, normal -> S
    "sagittal": ((0.0, 1.0, 0.0), (0.0, 0.0, -1.0)),  # columns -> P, rows -> I, normal -> R
}


@dataclass(frozen=True)
class StudySpec:
    """What to synthesize for one case. ``headers`` overrides imaging-variable values (v1 column names)."""

    patient_id: str = "SYN_001"
    tcia_patient_id: str | None = None
    dataset: str = "SYN"
    vendor: str = "GE"
    view: str = "axial"
    layout: str = "per_phase"  # per_phase | single_series
    n_phases: int = 4
    matrix: tuple[int, int] = (64, 64)  # Rows, Columns
    n_slices: int = 24
    pixel_spacing: tuple[float, float] = (2.0, 2.0)  # row spacing, column spacing (mm)
    slice_spacing: float = 4.0
    oblique_deg: float = 0.0
    bilateral: bool = True
    fat_suppressed: bool = True
    lesion: bool = True
    rescale: tuple[float, float] | None = None  # (slope, intercept); None = vendor default
    headers: dict[str, Any] = field(default_factory=dict)
    acquisition_times: tuple[int, ...] | None = None  # override the phantom's seconds from first phase
    extra_non_dicom: bool = True  # drop a non-DICOM file in the folder (the inventory must ignore it)
    # SeriesDescription of each series (one per phase for per_phase, one for single_series); None = vendor's
    series_descriptions: tuple[str, ...] | None = None
    image_type: tuple[str, ...] = ("ORIGINAL", "PRIMARY", "OTHER")  # ImageType of the dynamic's images

    @property
    def full_size(self) -> StudySpec:
        """The same study at production size (512x512x120, 0.7 mm in-plane, 1.5 mm slices)."""
        return replace(self, matrix=(512, 512), n_slices=120, pixel_spacing=(0.7031, 0.7031), slice_spacing=1.5)


@dataclass
class StudyTruth:
    """What the converter must give back for a written study."""

    spec: StudySpec
    root: Path
    files: list[Path]
    series_uids: list[str]  # in phase order (one entry for a single-series study)
    grid_affine: np.ndarray  # 4x4 LPS affine of the (c, r, k) grid
    values: np.ndarray  # (n_phases, c, r, k) real-world values (stored * slope + intercept)
    mask: np.ndarray  # uint8 (c, r, k) lesion mask
    headers: dict[str, Any]  # imaging variables as they should be extracted
    acquisition_times: list[int]


def _uid(rng: np.random.Generator) -> str:
    return UID_ROOT + str(int.from_bytes(rng.bytes(15), "big"))


def _rotation(deg: float, axis: tuple[float, float, float]) -> np.ndarray:
    a = np.asarray(axis, float)
    a /= np.linalg.norm(a)
    t = math.radians(deg)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + math.sin(t) * k + (1 - math.cos(t)) * k @ k


def grid_geometry(spec: StudySpec, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Row cosine, column cosine, slice normal and the 4x4 LPS affine of the (c, r, k) grid."""
    if spec.view not in VIEWS:
        raise ValueError(f"view must be one of {sorted(VIEWS)}, got {spec.view!r}")
    row_dir, col_dir = (np.array(v) for v in VIEWS[spec.view])
    if spec.oblique_deg:
        rot = _rotation(spec.oblique_deg, (0.3, 1.0, 0.5))
        row_dir, col_dir = rot @ row_dir, rot @ col_dir
    normal = np.cross(row_dir, col_dir)
    dr, dc = spec.pixel_spacing
    n_rows, n_cols = spec.matrix
    lin = np.column_stack([row_dir * dc, col_dir * dr, normal * spec.slice_spacing])
    centre = np.array([n_cols - 1, n_rows - 1, spec.n_slices - 1]) / 2.0
    table = rng.uniform(-20, 20, 3).round(1)
    affine = np.eye(4)
    affine[:3, :3] = lin
    affine[:3, 3] = table - lin @ centre
    return row_dir, col_dir, normal, affine


def phantom_for(spec: StudySpec, seed: int) -> Phantom:
    """The anatomical phantom (axes L, P, S) sampled on the spec's field of view."""
    n_rows, n_cols = spec.matrix
    dr, dc = spec.pixel_spacing
    if spec.view == "axial":
        shape, spacing = (n_cols, n_rows, spec.n_slices), (dc, dr, spec.slice_spacing)
    else:  # sagittal: L-R along slices, A-P along columns, S-I along rows
        shape, spacing = (spec.n_slices, n_cols, n_rows), (spec.slice_spacing, dc, dr)
    return make_phantom(seed, shape=shape, spacing=spacing, n_phases=spec.n_phases, bilateral=spec.bilateral,
                        lesion=spec.lesion, fat_suppressed=spec.fat_suppressed)


def to_grid(spec: StudySpec, volume: np.ndarray) -> np.ndarray:
    """Map an anatomical (L, P, S) array onto the (c, r, k) grid of the spec's view (last three axes)."""
    if spec.view == "axial":
        return volume  # c -> L, r -> P, k -> S
    # sagittal: c -> P (anatomical y), r -> I (reversed z), k -> R (reversed x)
    v = np.moveaxis(volume, (-3, -2, -1), (-1, -3, -2))  # (..., y, z, x)
    return v[..., :, ::-1, ::-1]


def _vendor(spec: StudySpec) -> dict[str, Any]:
    try:
        return VENDORS[spec.vendor]
    except KeyError:
        raise ValueError(f"vendor must be one of {sorted(VENDORS)}, got {spec.vendor!r}") from None


def default_headers(spec: StudySpec, rng: np.random.Generator) -> dict[str, Any]:
    """Imaging-variable values for a spec (vendor defaults), overridden by ``spec.headers``."""
    v = _vendor(spec)
    out: dict[str, Any] = {
        "manufacturer": spec.vendor,
        "scanner_model": v["model"],
        "field_strength": 1.5 if spec.vendor != "SIEMENS" else 3.0,
        "echo_time": v["echo_time"],
        "repetition_time": v["repetition_time"],
        "high_bit": v["high_bit"],
        "slice_thickness": float(spec.slice_spacing),
        "window_center": float(rng.integers(40, 400)),
        "window_width": None,
        "site": f"Site AA{chr(65 + int(rng.integers(0, 20)))}",
        "acquisition_date": (f"{int(rng.integers(1985, 2012))}/{int(rng.integers(1, 13)):02d}/"
                             f"{int(rng.integers(1, 29)):02d}"),
        "weight": float(round(rng.uniform(45, 110), 3)),
        "patient_size": None,
        "fat_suppressed": int(spec.fat_suppressed),
        "bilateral_mri": int(spec.bilateral),
    }
    out["window_width"] = 2.0 * out["window_center"]
    out.update(spec.headers)
    return out


def _ds(value: float) -> str:
    """A DS string (max 16 chars) that reads back as exactly ``value``."""
    text = repr(float(value))
    if text.endswith(".0"):
        text = text[:-2]
    if len(text) > 16:
        text = f"{value:.10g}"
    return text


def _time_str(seconds: float) -> str:
    seconds = max(0.0, seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{int(h):02d}{int(m):02d}{s:09.6f}"


def write_study(out_dir: str | Path, spec: StudySpec, seed: int) -> StudyTruth:
    """Write one case's DICOM files under ``out_dir`` (one subfolder per series); return the truth."""
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import UID, ExplicitVRLittleEndian

    out_dir = Path(out_dir)
    rng = np.random.default_rng(seed)
    v = _vendor(spec)
    if spec.layout not in LAYOUTS:
        raise ValueError(f"layout must be per_phase or single_series, got {spec.layout!r}")
    n_series = spec.n_phases if spec.layout == "per_phase" else 1
    if spec.series_descriptions is not None and len(spec.series_descriptions) != n_series:
        raise ValueError(f"series_descriptions needs {n_series} entries, got {len(spec.series_descriptions)}")
    hdr = default_headers(spec, rng)
    row_dir, col_dir, normal, affine = grid_geometry(spec, rng)
    phantom = phantom_for(spec, seed)
    times = list(spec.acquisition_times) if spec.acquisition_times is not None else phantom.acquisition_times
    if len(times) != spec.n_phases or times[0] != 0:
        raise ValueError(f"acquisition_times must start at 0 and have {spec.n_phases} entries, got {times}")
    grid = to_grid(spec, phantom.phases)
    mask = np.ascontiguousarray(to_grid(spec, phantom.mask))

    slope, intercept = spec.rescale if spec.rescale is not None else (v["rescale"] or (1.0, 0.0))
    bits = int(hdr["high_bit"]) + 1
    top = (1 << bits) - 1
    stored = np.clip(np.rint((grid - intercept) / slope), 0, top).astype(np.uint16)
    values = stored.astype(np.float64) * slope + intercept
    write_rescale = spec.rescale is not None or v["rescale"] is not None

    study_uid, frame_uid = _uid(rng), _uid(rng)
    series_uids = [_uid(rng) for _ in range(n_series)]
    if hdr.get("tcia_series_uid"):
        series_uids[0] = str(hdr["tcia_series_uid"])
    hdr["tcia_series_uid"] = series_uids[0]

    date = (hdr.get("acquisition_date") or "").replace("/", "")
    study_clock = float(rng.integers(8 * 3600, 17 * 3600))
    pre_start = study_clock + float(rng.integers(60, 600))
    n_rows, n_cols = spec.matrix
    dr, dc = spec.pixel_spacing
    tcia_pid = spec.tcia_patient_id or spec.patient_id
    fs = bool(hdr.get("fat_suppressed"))
    scan_options = list(v["scan_options"]) + ([v["fs_option"]] if fs else [])
    laterality = "B" if hdr.get("bilateral_mri") else ("L" if rng.random() < 0.5 else "R")

    files: list[Path] = []
    order = rng.permutation(spec.n_phases * spec.n_slices)  # shuffled file names
    counter = 0
    for p in range(spec.n_phases):
        s_idx = p if spec.layout == "per_phase" else 0
        series_uid = series_uids[s_idx]
        series_dir = out_dir / series_uid
        series_dir.mkdir(parents=True, exist_ok=True)
        acq_clock = pre_start + times[p]
        for k in range(spec.n_slices):
            ipp = affine[:3, 3] + affine[:3, 2] * k
            meta = FileMetaDataset()
            sop_uid = UID(_uid(rng))
            meta.MediaStorageSOPClassUID = UID(MR_IMAGE_STORAGE)
            meta.MediaStorageSOPInstanceUID = sop_uid
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
            meta.ImplementationClassUID = UID(UID_ROOT + "1")
            ds = Dataset()
            ds.file_meta = meta
            ds.SpecificCharacterSet = "ISO_IR 100"
            ds.ImageType = list(spec.image_type)
            ds.SOPClassUID = MR_IMAGE_STORAGE
            ds.SOPInstanceUID = sop_uid
            if date:
                ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = date
            ds.StudyTime = _time_str(study_clock)
            ds.SeriesTime = _time_str(pre_start + (times[p] if spec.layout == "per_phase" else 0))
            ds.AcquisitionTime = ds.ContentTime = _time_str(acq_clock)
            ds.AccessionNumber = f"ACC{int(rng.integers(10**6, 10**7))}"  # fake PHI
            ds.Modality = "MR"
            ds.Manufacturer = v["Manufacturer"] if hdr.get("manufacturer") == spec.vendor else str(hdr["manufacturer"])
            ds.InstitutionName = "Synthetic General Hospital"  # fake PHI
            ds.ReferringPhysicianName = "Doe^Referrer"  # fake PHI
            if spec.series_descriptions is not None:
                ds.SeriesDescription = spec.series_descriptions[s_idx]
            elif spec.layout == "per_phase":
                ds.SeriesDescription = v["series_description"][fs] + (" pre" if p == 0 else f" post{p}")
            else:
                ds.SeriesDescription = v["series_description"][fs]
            ds.ManufacturerModelName = str(hdr["scanner_model"])
            ds.PatientName = f"SYNTH^PATIENT^{tcia_pid}"  # fake PHI
            ds.PatientID = tcia_pid
            ds.PatientBirthDate = "19600101"  # fake PHI
            ds.PatientSex = "F"
            if hdr.get("patient_size") is not None:
                ds.PatientSize = _ds(hdr["patient_size"])
            if hdr.get("weight") is not None:
                ds.PatientWeight = _ds(hdr["weight"])
            if hdr.get("site") is not None:
                ds.ClinicalTrialSiteID = str(hdr["site"])
                ds.ClinicalTrialSiteName = str(hdr["site"])
            ds.BodyPartExamined = "BREAST"
            ds.ScanningSequence = "GR"
            ds.SequenceVariant = ["SP", "SS"]
            ds.ScanOptions = scan_options
            ds.MRAcquisitionType = "3D"
            ds.SliceThickness = _ds(hdr["slice_thickness"])
            ds.RepetitionTime = _ds(hdr["repetition_time"])
            ds.EchoTime = _ds(hdr["echo_time"])
            ds.MagneticFieldStrength = _ds(hdr["field_strength"])
            ds.SpacingBetweenSlices = _ds(spec.slice_spacing)
            ds.FlipAngle = "10"
            ds.ContrastBolusAgent = "GADOLINIUM" if p > 0 else ""
            ds.StudyInstanceUID = study_uid
            ds.SeriesInstanceUID = series_uid
            ds.StudyID = "1"
            ds.SeriesNumber = 600 + s_idx
            if spec.layout == "single_series":
                ds.InstanceNumber = k * spec.n_phases + p + 1  # interleaved: all phases of a slice together
            else:
                ds.InstanceNumber = k + 1
            ds.ImagePositionPatient = [_ds(x) for x in ipp]
            ds.ImageOrientationPatient = [_ds(round(x, 8)) for x in (*row_dir, *col_dir)]
            ds.FrameOfReferenceUID = frame_uid
            ds.Laterality = "" if laterality == "B" else laterality
            ds.ImageLaterality = laterality
            ds.SliceLocation = _ds(round(float(ipp @ normal), 4))
            tag = v["temporal_tag"]
            ds.TriggerTime = _ds(float(times[p]) * 1000.0) if tag == "TriggerTime" else "0"
            ds.AcquisitionNumber = p + 1 if tag == "AcquisitionNumber" else 1
            if tag == "TemporalPositionIdentifier" or spec.layout == "per_phase":
                ds.TemporalPositionIdentifier = p + 1
                ds.NumberOfTemporalPositions = spec.n_phases
            ds.SamplesPerPixel = 1
            ds.PhotometricInterpretation = "MONOCHROME2"
            ds.Rows, ds.Columns = n_rows, n_cols
            ds.PixelSpacing = [_ds(dr), _ds(dc)]
            ds.BitsAllocated = 16
            ds.BitsStored = bits
            ds.HighBit = bits - 1
            ds.PixelRepresentation = 0
            if hdr.get("window_center") is not None:
                ds.WindowCenter = _ds(hdr["window_center"])
            if hdr.get("window_width") is not None:
                ds.WindowWidth = _ds(hdr["window_width"])
            if write_rescale:
                ds.RescaleIntercept = _ds(intercept)
                ds.RescaleSlope = _ds(slope)
                ds.RescaleType = "US"
            # pixel[r, c] = grid[c, r, k]
            ds.PixelData = np.ascontiguousarray(stored[p, :, :, k].T).tobytes()
            name = series_dir / f"IM{int(order[counter]):05d}.dcm"
            counter += 1
            pydicom.dcmwrite(name, ds, enforce_file_format=True)
            files.append(name)
    if spec.extra_non_dicom:
        (out_dir / "README.txt").write_text("synthetic study written by etl.synth; not DICOM\n")

    expected = dict(hdr)
    expected.update(
        view=spec.view,
        num_phases=spec.n_phases,
        image_rows=n_rows,
        image_columns=n_cols,
        num_slices=spec.n_slices,
        pixel_spacing=[float(_ds(dr)), float(_ds(dc))],
        acquisition_times=[int(t) for t in times],
        tcia_series_uid=series_uids[0],
    )
    for key in ("field_strength", "echo_time", "repetition_time", "slice_thickness", "window_center", "window_width",
                "weight", "patient_size"):
        if expected.get(key) is not None:
            expected[key] = float(_ds(expected[key]))
    return StudyTruth(spec=spec, root=out_dir, files=files, series_uids=series_uids, grid_affine=affine,
                      values=values, mask=mask, headers=expected, acquisition_times=[int(t) for t in times])



def add_series(truth: StudyTruth, description: str, image_type: tuple[str, ...] = ("ORIGINAL", "PRIMARY", "OTHER"),
               seconds: float = 5.0, n_positions: int = 1, value: int = 50000, series_number: int = 900,
               matrix: tuple[int, int] | None = None, n_images: int | None = None) -> tuple[str, list[Path]]:
    """Another series of the study beside the dynamic (a T1 without fat suppression, a map, a subtraction):
    phase 0's geometry (or ``matrix`` rows x columns, cropped: another geometry), ``n_positions`` temporal
    positions, acquired ``seconds`` after phase 0 (negative: before), pixels ``value + 100 * position + k``
    so a test can tell them from the dynamic's; ``n_images`` keeps only the first slices (a one-image MIP).
    Returns (series UID, files)."""
    import pydicom
    from pydicom.uid import UID
    from pydicom.valuerep import TM

    firsts = truth.files[:truth.spec.n_slices][:n_images]  # files are written phase by phase
    rng = np.random.default_rng(zlib.crc32(repr((truth.series_uids, description, seconds, value)).encode()))
    uid = _uid(rng)
    folder = truth.root / uid
    folder.mkdir(parents=True)
    files = []
    for t in range(n_positions):
        for k, f in enumerate(firsts):
            ds = pydicom.dcmread(f)
            ds.SeriesInstanceUID = uid
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = UID(_uid(rng))
            ds.SeriesDescription = description
            ds.ImageType = list(image_type)
            ds.SeriesNumber = series_number
            tm = TM(ds.AcquisitionTime)
            secs = tm.hour * 3600 + tm.minute * 60 + tm.second + seconds + 60 * t
            ds.AcquisitionTime = ds.ContentTime = ds.SeriesTime = _time_str(secs)
            ds.TemporalPositionIdentifier = t + 1
            ds.NumberOfTemporalPositions = n_positions
            ds.AcquisitionNumber = t + 1
            ds.TriggerTime = _ds(60000.0 * t)
            ds.InstanceNumber = k * n_positions + t + 1
            rows, cols = matrix or (ds.Rows, ds.Columns)
            ds.Rows, ds.Columns = rows, cols
            ds.PixelData = np.full((rows, cols), value + 100 * t + k, dtype="<u2").tobytes()
            name = folder / f"X{t:02d}{k:03d}.dcm"
            ds.save_as(name, enforce_file_format=True)
            files.append(name)
    return uid, files


def write_enhanced(truth: StudyTruth, path: str | Path, shuffle_seed: int | None = 0) -> Path:
    """Re-encode a written (classic, one file per slice) study as one Enhanced MR multi-frame file.

    Geometry, rescale and timing move into the functional groups (orientation and pixel measures shared;
    position, frame content with TemporalPositionIndex and FrameAcquisitionDateTime per frame), the way
    Enhanced MR Image Storage carries them; frames are shuffled unless ``shuffle_seed`` is None.
    """
    import pydicom
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence
    from pydicom.uid import UID, generate_uid

    n = truth.spec.n_slices
    frames = [pydicom.dcmread(f) for f in truth.files]  # phase-major, slices along the normal
    phase_of = [i // n for i in range(len(frames))]
    order = list(range(len(frames)))
    if shuffle_seed is not None:
        order = [int(i) for i in np.random.default_rng(shuffle_seed).permutation(len(frames))]
    first = frames[0]
    ds = Dataset()
    ds.file_meta = first.file_meta
    ds.file_meta.MediaStorageSOPClassUID = UID("1.2.840.10008.5.1.4.1.1.4.1")  # Enhanced MR Image Storage
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.4.1"
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    per_frame_tags = {"ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "SliceThickness",
                      "RescaleSlope", "RescaleIntercept", "RescaleType", "AcquisitionTime", "ContentTime",
                      "TemporalPositionIdentifier", "TriggerTime", "InstanceNumber", "SliceLocation",
                      "SOPInstanceUID", "PixelData"}
    for elem in first:
        if elem.keyword not in per_frame_tags and elem.keyword != "SOPClassUID":
            ds.add(elem)
    ds.SeriesInstanceUID = truth.series_uids[0]
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "NONE"]
    ds.NumberOfFrames = len(frames)
    shared = Dataset()
    orient, measures = Dataset(), Dataset()
    orient.ImageOrientationPatient = first.ImageOrientationPatient
    measures.PixelSpacing = first.PixelSpacing
    measures.SliceThickness = first.SliceThickness
    shared.PlaneOrientationSequence = Sequence([orient])
    shared.PixelMeasuresSequence = Sequence([measures])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    per = []
    for i in order:
        f = frames[i]
        item, pos, content = Dataset(), Dataset(), Dataset()
        pos.ImagePositionPatient = f.ImagePositionPatient
        content.TemporalPositionIndex = phase_of[i] + 1
        content.FrameAcquisitionDateTime = f"{f.AcquisitionDate}{f.AcquisitionTime}" if "AcquisitionDate" in f else \
            f"19700101{f.AcquisitionTime}"
        content.StackID = "1"
        content.InStackPositionNumber = i % n + 1
        item.PlanePositionSequence = Sequence([pos])
        item.FrameContentSequence = Sequence([content])
        if "RescaleSlope" in f:
            pvt = Dataset()
            pvt.RescaleSlope, pvt.RescaleIntercept, pvt.RescaleType = f.RescaleSlope, f.RescaleIntercept, "US"
            item.PixelValueTransformationSequence = Sequence([pvt])
        per.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per)
    ds.PixelData = b"".join(frames[i].PixelData for i in order)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return path
