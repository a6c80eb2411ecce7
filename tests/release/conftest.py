"""Session fixtures for the release tests (see release_helpers.py for how the staged data is made)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.release.release_helpers import Staged, make_staged


@pytest.fixture(scope="session")
def staged(tmp_path_factory: pytest.TempPathFactory) -> Staged:
    return make_staged(tmp_path_factory.mktemp("staged"))


@pytest.fixture(scope="session")
def release_dir(staged: Staged, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One release built from the session fixture (tests that modify it work on a copy)."""
    from etl.release.build import build_release
    from etl.release.definition import load_definition

    out = tmp_path_factory.mktemp("rel") / "test-release-0.1.0"
    build_release(load_definition(staged.definition), out)
    return out


@pytest.fixture
def release_copy(release_dir: Path, tmp_path: Path) -> Path:
    dst = tmp_path / release_dir.name
    shutil.copytree(release_dir, dst)
    return dst
