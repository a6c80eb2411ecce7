"""Types checked: mypy passes on the whole package at the strictness set in pyproject.toml ([tool.mypy]), and
the package says it is typed (etl/py.typed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_mypy_passes_on_the_package(tmp_path: Path) -> None:
    """One cold mypy run (~45 s of one core): its cache lives in tmp_path, so a stale cache from an earlier
    checkout can never hide an error, and nothing is written into the repository."""
    from mypy import api

    stdout, stderr, status = api.run([
        "--config-file", str(REPO / "pyproject.toml"),
        "--cache-dir", str(tmp_path / "mypy-cache"),
        str(REPO / "etl"),
    ])
    assert status == 0, f"mypy found errors:\n{stdout}{stderr}"


def test_package_is_marked_typed() -> None:
    assert (REPO / "etl" / "py.typed").is_file()


def test_type_aliases_do_not_import_numpy_until_an_affine_is_used() -> None:
    """etl.types is imported by modules on light paths (paths only); numpy comes with the affine aliases."""
    code = ("import sys, etl.types as t; assert 'numpy' not in sys.modules; t.StrPath; t.Spacing; "
            "a = t.AffineLPS; assert 'numpy' in sys.modules; import numpy as np; "
            "assert a == np.typing.NDArray[np.float64] == t.AffineRAS; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "ok", out.stderr
