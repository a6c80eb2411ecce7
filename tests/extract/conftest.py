"""Fixtures for the extract tests: a seeded DICOM corpus, a Synapse-like tree, fast retry limits."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from extract_dicomgen import TOKEN, CorpusCase, write_corpus, write_manifest, write_synapse_tree  # noqa: E402,F401
from extract_fixtures import bound_each_test, fast, no_user_synapse_config  # noqa: E402,F401  (shared fixtures)


@pytest.fixture(scope="session")
def corpus20(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[CorpusCase], Path]:
    """20 cases x 3 phases x 3 slices of real DICOM, and its manifest."""
    root = tmp_path_factory.mktemp("corpus20")
    cases = write_corpus(root / "dicom", 20, seed=11)
    return root / "dicom", cases, write_manifest(root / "manifest.csv", cases)


@pytest.fixture(scope="session")
def corpus3(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[CorpusCase], Path]:
    root = tmp_path_factory.mktemp("corpus3")
    cases = write_corpus(root / "dicom", 3, seed=5)
    return root / "dicom", cases, write_manifest(root / "manifest.csv", cases)


@pytest.fixture(scope="session")
def syn_tree20(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synapse_tree(tmp_path_factory.mktemp("syn20") / "MAMA-MIA", 20)


@pytest.fixture(scope="session")
def syn_tree2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synapse_tree(tmp_path_factory.mktemp("syn2") / "MAMA-MIA", 2)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every extract test is bounded: a hung download or stand-in fails in a minute, not at the suite timeout."""
    bound_each_test(items, Path(__file__).parent)
