"""A small release for the export tests: the release tests' staged cases, every case with both masks, and
two folds (so one case can lose its mask and every fold keeps validation cases)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.release.release_helpers import AUTO_BOX, EXPERT_BOX, SHAPE, make_staged, nifti_gz, write_definition


@pytest.fixture(scope="session")
def export_release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from etl.layout import Layout
    from etl.release.build import build_release
    from etl.release.definition import load_definition
    from etl.tables import read_table

    base = tmp_path_factory.mktemp("export")
    staged = make_staged(base)
    layout = Layout.from_definition(staged.root)
    views = dict(zip(*(read_table(staged.table)[c] for c in ("patient_id", "view"))))
    for pid in staged.ids:  # the helper leaves every 4th case without masks
        for path, box in ((layout.expert_mask(pid), EXPERT_BOX), (layout.automatic_mask(pid), AUTO_BOX)):
            if not path.exists():
                mask = np.zeros(SHAPE, np.uint8)
                mask[box] = 1
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(nifti_gz(mask, views[pid]))
    definition = write_definition(base / "defs" / "export.yaml", staged="../staged", table="../table.parquet",
                                  split={"seed": 3, "test_fraction": 0.25, "folds": 2, "min_stratum": 1,
                                         "nnunet_case_id": "{patient_id}"})
    out = base / "release"
    build_release(load_definition(definition), out)
    return out


@pytest.fixture
def export_release_copy(export_release: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "release"
    shutil.copytree(export_release, dst)
    return dst
