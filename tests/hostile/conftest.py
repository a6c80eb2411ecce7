"""Fixtures for the hostile-input corpus: everything is generated small, per session, from seeds."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "extract"))

from extract_dicomgen import TOKEN, CorpusCase, write_corpus, write_manifest, write_synapse_tree  # noqa: E402,F401
from extract_fixtures import bound_each_test, fast, no_user_synapse_config  # noqa: E402,F401  (shared fixtures)


@pytest.fixture(scope="session")
def corpus2(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[CorpusCase], Path]:
    """2 cases x 2 phases x 3 slices of real DICOM bytes and their manifest."""
    root = tmp_path_factory.mktemp("hostile-corpus")
    cases = write_corpus(root / "dicom", 2, seed=17, phases=2)
    return root / "dicom", cases, write_manifest(root / "manifest.csv", cases)


@pytest.fixture(scope="session")
def syn_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synapse_tree(tmp_path_factory.mktemp("hostile-syn") / "MAMA-MIA", 1)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A hostile input must end quickly: every test here is bounded at a minute."""
    bound_each_test(items, Path(__file__).parent)
