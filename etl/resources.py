"""One locator for the data folders (schemas/, mappings/, manifests/, release/).

In a source checkout or an editable install the folders sit at the top of the repository; after a plain
``pip install .`` the wheel carries them under ``etl/_data``. Callers never care which.
"""

from __future__ import annotations

from pathlib import Path

DATA_FOLDERS = ("schemas", "mappings", "manifests", "release")

_PACKAGE_DIR = Path(__file__).resolve().parent


def data_root(folder: str) -> Path:
    """Directory of one data folder, wherever the install put it."""
    if folder not in DATA_FOLDERS:
        raise ValueError(f"unknown data folder {folder!r}; expected one of {DATA_FOLDERS}")
    for candidate in (_PACKAGE_DIR / "_data" / folder, _PACKAGE_DIR.parent / folder):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"data folder {folder!r} is not installed next to {_PACKAGE_DIR}")


def data_path(relative: str) -> Path:
    """Path of a shipped data file, e.g. ``data_path("schemas/clinical_imaging.yaml")``."""
    folder, _, rest = relative.partition("/")
    path = data_root(folder) / rest
    if not path.exists():
        raise FileNotFoundError(f"shipped data file {relative!r} not found under {data_root(folder)}")
    return path
