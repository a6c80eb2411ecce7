"""Helpers for the release tests: a small staged directory built with nibabel, a table made from real v1
rows for those cases, and a release definition pointing at both (relative paths)."""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from tests.conftest import REPO, V1_TABLE

# Two cases per collection: DUKE/ISPY2 axial, ISPY1/NACT sagittal (as in v1).
CASES = ["DUKE_001", "DUKE_002", "ISPY1_1001", "ISPY1_1002", "ISPY2_100899", "ISPY2_102011", "NACT_01", "NACT_02"]
SHAPE = (12, 10, 6)
SPACING = (0.8, 0.8, 2.0)
EXPERT_BOX = (slice(3, 7), slice(2, 6), slice(1, 4))  # 4 x 4 x 3 voxels
AUTO_BOX = (slice(4, 8), slice(2, 6), slice(1, 4))  # shifted by one voxel along x

# nibabel aff2axcodes of the written files, per profile (mama-mia-v1: axial LPS, sagittal RAS)
AFFINE_SIGNS = {"axial": (-1, -1, 1), "sagittal": (1, 1, 1)}


def nifti_gz(data: np.ndarray, view: str, spacing: tuple[float, ...] = SPACING) -> bytes:
    """A gzipped NIfTI with a fixed gzip mtime (the staged files the convert stage would write)."""
    import nibabel as nib

    signs = AFFINE_SIGNS[view]
    affine = np.diag([s * z for s, z in zip(signs, spacing)] + [1.0])
    affine[:3, 3] = [-10.0, 20.0, -5.0]
    img = nib.Nifti1Image(data, affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    return gzip.compress(img.to_bytes(), compresslevel=1, mtime=0)


@dataclass
class Staged:
    root: Path
    table: Path
    definition: Path
    ids: list[str]


def v1_rows(ids: list[str]):  # type: ignore[no-untyped-def]
    from etl.tables import read_table

    df = read_table(V1_TABLE)
    return df[df["patient_id"].isin(ids)].reset_index(drop=True)


def make_staged(base: Path, ids: list[str] = CASES, masks: bool = True, seed: int = 0) -> Staged:
    """Staged dir + table + definition under ``base``; phases = the case's num_phases in v1."""
    from etl.layout import Layout
    from etl.tables import write_table

    rows = v1_rows(ids)
    root = base / "staged"
    layout = Layout.from_definition(root)
    rng = np.random.default_rng(seed)
    for i, row in rows.iterrows():
        pid = row["patient_id"]
        view = row["view"]
        for phase in range(int(row["num_phases"])):
            data = rng.integers(0, 800, size=SHAPE, dtype=np.int16)
            p = layout.image(pid, phase)
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(nifti_gz(data, view))
        if masks and i % 4 != 3:  # some cases without masks
            expert = np.zeros(SHAPE, np.uint8)
            expert[EXPERT_BOX] = 1
            auto = np.zeros(SHAPE, np.uint8)
            auto[AUTO_BOX] = 1
            for p, m in ((layout.expert_mask(pid), expert), (layout.automatic_mask(pid), auto)):
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_bytes(nifti_gz(m, view))
        imaging = {c: (None if _na(row[c]) else _plain(row[c])) for c in ("view", "num_phases", "manufacturer", "acquisition_times")}
        p = layout.imaging_json(pid)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(imaging))
    table = base / "table.parquet"
    write_table(rows, table)
    definition = write_definition(base / "defs" / "test.yaml", staged="../staged", table="../table.parquet")
    return Staged(root, table, definition, list(rows["patient_id"]))


def write_definition(path: Path, **sources: object) -> Path:
    """A copy of release/v1.yaml with test sources (relative paths resolve against the definition)."""
    doc = yaml.safe_load((REPO / "release" / "v1.yaml").read_text())
    doc["name"] = "test-release"
    doc["version"] = str(sources.pop("version", "0.1.0"))
    doc["sources"] = {"staged": [sources.pop("staged")], "table": sources.pop("table"), "caches": []}
    doc.update(sources)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _na(v: object) -> bool:
    import pandas as pd

    return v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v))


def _plain(v: object) -> object:
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    return str(v) if not isinstance(v, (int, float)) else v
