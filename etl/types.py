"""Type aliases used across the package: paths, voxel grids and affines.

These are aliases, not new types: mypy treats ``AffineLPS`` and ``AffineRAS`` as the same array type, so
the name is what tells a reader (and a reviewer) which frame an affine is in. Two frames occur:

- DICOM patient coordinates, **LPS**: +x towards the patient's Left, +y Posterior, +z Superior (what
  ImagePositionPatient / ImageOrientationPatient are in; ``etl.transform.dicom`` builds its grids there).
- NIfTI world coordinates, **RAS+**: +x towards the patient's Right, +y Anterior, +z Superior (what a NIfTI
  qform/sform and nibabel's ``img.affine`` are in).

The two differ by a sign flip of x and y: ``affine_ras = LPS_TO_RAS @ affine_lps`` with
``LPS_TO_RAS = np.diag([-1, -1, 1, 1])`` (``etl.transform.nifti``).
Spacings are in millimetres along the *array* axes (not along x, y, z of either frame).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, TypeAlias

StrPath: TypeAlias = str | os.PathLike[str]
"""A file system path as accepted by ``open`` and ``pathlib.Path``: ``str`` or any ``os.PathLike[str]``."""

Spacing: TypeAlias = tuple[float, float, float]
"""Voxel size in mm along the three array axes, in array-axis order."""

Shape3: TypeAlias = tuple[int, int, int]
"""The number of voxels along the three array axes of a volume."""

VoxelIndex: TypeAlias = tuple[int, int, int]
"""An integer index into a 3-D array (one value per array axis)."""

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    AffineLPS: TypeAlias = npt.NDArray[np.float64]
    """A 4x4 voxel-index -> DICOM patient LPS (mm) transform: ``affine @ (i, j, k, 1)`` is the voxel centre
    with +x towards the patient's Left, +y Posterior, +z Superior."""

    AffineRAS: TypeAlias = npt.NDArray[np.float64]
    """A 4x4 voxel-index -> NIfTI RAS+ (mm) transform, as in a NIfTI sform/qform and nibabel's
    ``img.affine``: +x towards the patient's Right, +y Anterior, +z Superior."""
else:

    def __getattr__(name: str) -> object:
        # numpy is imported when an affine alias is first used at run time, not by ``import etl.types``
        # (modules that only need StrPath, e.g. on the CLI's start-up path, stay free of numpy)
        if name in ("AffineLPS", "AffineRAS"):
            import numpy as np
            import numpy.typing as npt

            return npt.NDArray[np.float64]
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["AffineLPS", "AffineRAS", "Shape3", "Spacing", "StrPath", "VoxelIndex"]
