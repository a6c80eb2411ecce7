"""Write one DICOM phase to NIfTI slice by slice, without ever holding the volume.

Why: at corpus scale the conversion is memory traffic. Reading a phase into one array, reorienting it,
compressing it and joining the result touches three fresh copies of 60-250 MB per phase; the page faults
alone were a third of the CPU of ``mamamia convert`` on a 2-core VM. When the profile's orientation keeps
the slice axis as NIfTI z (axial acquisitions in both shipped profiles; the slices may be reversed and each
plane flipped or transposed), NIfTI plane j *is* one DICOM slice, so each slice's pixel bytes are read
straight into the gzip writer's one chunk buffer (or, when the plane must be flipped, transposed or sign
extended, through one reused plane buffer). Peak memory is one 4 MiB buffer and one plane per worker.

The bytes are those of the whole-array path (``etl.transform.nifti.write_phase`` of ``read_phase``): same
header, same affine, same chunking. Rescaled values, whose type depends on the whole phase's stored range,
take two passes over the slices (the range, then the values, through the same ``Rescale`` as the reader).
A slice axis that becomes x or y (sagittal series written in RAS) takes the whole-array path. ``tests/imaging`` compares
the two paths byte for byte over every orientation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from etl.atomic import atomic_path
from etl.errors import DicomError
from etl.transform.dicom.model import Phase, where
from etl.transform.dicom.pixels import (is_unscaled, needs_sign_extension, read_phase, read_plane, rescale_for,
                                       stored_dtype)
from etl.transform.gzipstream import ChunkedGzipWriter
from etl.transform.nifti import nifti_header, orientation_transform, profile_codes, view_of
from etl.transform.nifti import write_phase as write_whole_phase


@dataclass(frozen=True)
class PlanePlan:
    """How NIfTI plane j comes from DICOM slice k when the slice axis stays z."""

    reverse_slices: bool  # plane j = slice n-1-j
    transpose: bool       # NIfTI x runs along the DICOM rows (c -> y, r -> x)
    flip_rows: bool       # the DICOM row index runs backwards
    flip_cols: bool       # the DICOM column index runs backwards

    @property
    def in_place(self) -> bool:
        """A slice's stored bytes are the NIfTI plane's bytes as they are."""
        return not (self.transpose or self.flip_rows or self.flip_cols)


def plane_plan(xform: np.ndarray | None) -> PlanePlan | None:
    """The plan for a nibabel ornt transform of the (c, r, k) axes; None when k does not become z."""
    if xform is None:
        return PlanePlan(False, False, False, False)
    if int(xform[2, 0]) != 2:
        return None
    return PlanePlan(reverse_slices=xform[2, 1] < 0, transpose=int(xform[0, 0]) == 1,
                     flip_rows=xform[1, 1] < 0, flip_cols=xform[0, 1] < 0)


def write_phase_from_dicom(path: str | Path, phase: Phase, profile: str | None,
                           level: int | None = None) -> tuple[str, np.ndarray]:
    """Write ``phase`` to ``path`` (``.nii.gz``) in the profile's orientation; returns (view, RAS affine)."""
    path = Path(path)
    first = phase.slices[0]
    view = view_of(phase.affine)
    codes = profile_codes(profile, view) if profile else None
    shape_crk = (first.cols, first.rows, len(phase.slices))
    xform, affine_ras = orientation_transform(phase.affine, shape_crk, codes)
    plan = plane_plan(xform)
    if plan is None or not path.name.endswith(".gz"):
        return write_whole_phase(path, read_phase(phase), phase.affine, profile, level=level)
    stored = stored_dtype(first)
    plane = np.empty((first.rows, first.cols), dtype=stored)
    rescale = None
    if not is_unscaled(phase):  # first pass: the stored range decides the output type (see Rescale)
        lo, hi = np.inf, -np.inf
        for s in phase.slices:
            read_plane(s, plane)
            lo, hi = min(lo, float(plane.min())), max(hi, float(plane.max()))
        rescale = rescale_for(phase, lo, hi)
    dtype = rescale.dtype if rescale is not None else stored
    out_shape = (first.rows, first.cols, len(phase.slices)) if plan.transpose else shape_crk
    header = nifti_header(out_shape, dtype, affine_ras)
    order = range(len(phase.slices) - 1, -1, -1) if plan.reverse_slices else range(len(phase.slices))
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        with ChunkedGzipWriter(fh, level) as gz:
            gz.write(header)
            for k in order:
                s = phase.slices[k]
                if (rescale is None and plan.in_place and s.pixel_offset is not None
                        and not needs_sign_extension(s, stored)):
                    with open(s.path, "rb", buffering=0) as src:
                        got = gz.read_from(src, s.pixel_offset, plane.nbytes)
                    if got != plane.nbytes:
                        raise DicomError(f"truncated file: read {got} of {plane.nbytes} pixel bytes", where(s))
                    continue
                read_plane(s, plane)
                values = rescale.plane(plane, k) if rescale is not None else plane
                view_yx = values.T if plan.transpose else values  # C order (y, x): x fastest, as NIfTI stores
                view_yx = view_yx[:: -1 if (plan.flip_cols if plan.transpose else plan.flip_rows) else 1,
                                  :: -1 if (plan.flip_rows if plan.transpose else plan.flip_cols) else 1]
                gz.write(np.ascontiguousarray(view_yx).data)
    return view, affine_ras
