"""Shared fixtures: the public spreadsheets shipped in tests/data and an in-process CLI runner."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Unmodified copies of the public spreadsheets (source, licence, sha256: tests/data/README.md).
TEST_DATA = REPO / "tests" / "data"
V1_TABLE = TEST_DATA / "reference" / "clinical_and_imaging_info.xlsx"
DUKE_SOURCE = TEST_DATA / "sources" / "duke" / "Clinical_and_Other_Features.xlsx"
ISPY1_SOURCE = TEST_DATA / "sources" / "ispy1" / "I-SPY_1_All_Patient_Clinical_and_Outcome_Data.xlsx"


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]):
    """Run `mamamia ARGS...` in-process; returns exit code, stdout and stderr."""
    from etl.cli import run

    def _run(*args: str | os.PathLike[str]) -> CliResult:
        capsys.readouterr()
        code = run([str(a) for a in args])
        out, err = capsys.readouterr()
        return CliResult(code, out, err)

    return _run


@pytest.fixture(scope="session")
def v1_path() -> Path:
    if not V1_TABLE.exists():
        pytest.fail(f"test data missing: {V1_TABLE} (see tests/data/README.md)")
    return V1_TABLE


@pytest.fixture(scope="session")
def v1_table(v1_path: Path):
    """The published v1 table as read by the package (read once per session)."""
    from etl.tables import read_table

    return read_table(v1_path)


from tests.browser import browser  # noqa: E402,F401  (the real-browser fixture, for every test folder)
