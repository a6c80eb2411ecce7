"""Python API: open_release, table, cases(where), image/mask, split, table_with_paths."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.release.release_helpers import EXPERT_BOX


def test_open_release_and_filter(release_dir: Path) -> None:
    from etl import Release, open_release

    rel = open_release(release_dir)
    assert isinstance(rel, Release) and "8 cases" in repr(rel)
    t = rel.table
    assert len(t) == 8 and t["her2"].dtype == "Int64" and {"split", "fold"} <= set(t.columns)
    where = "her2 == 1 and pcr == 1"
    expected = sorted(t.loc[(t["her2"] == 1).fillna(False) & (t["pcr"] == 1).fillna(False), "patient_id"])
    rows = rel.cases(where=where)
    assert sorted(rows["patient_id"]) == expected
    # missing values never match: pcr == 1 or pcr == 0 together miss the unknown-pcr cases only
    known = rel.cases("pcr == 1 or pcr == 0")
    assert len(known) == int(t["pcr"].notna().sum())
    for _, r in rel.cases().iterrows():
        assert len(r["image_paths"]) == r["num_phases"]
        assert all(Path(p).is_absolute() and Path(p).exists() for p in r["image_paths"])
        if pd.notna(r["mask_path"]):
            assert Path(r["mask_path"]).exists()


def test_images_masks_and_splits(release_dir: Path) -> None:
    from etl import open_release

    rel = open_release(release_dir)
    img = rel.image("DUKE_001", 1)
    assert img.shape == (12, 10, 6)
    mask = np.asanyarray(rel.mask("DUKE_001").dataobj)
    assert mask[EXPERT_BOX].all() and mask.sum() == mask[EXPERT_BOX].size
    auto = np.asanyarray(rel.mask("DUKE_001", "automatic").dataobj)
    assert auto.sum() == mask.sum() and not np.array_equal(auto, mask)
    train, test = rel.split("train"), rel.split("test")
    assert len(train) + len(test) == 8 and set(train["patient_id"]).isdisjoint(test["patient_id"])
    assert train["fold"].notna().all() and test["fold"].isna().all()
    assert rel.patient_info("DUKE_001")["primary_lesion"]["mask"] == "expert"


def test_errors_are_one_liners(release_dir: Path, tmp_path: Path) -> None:
    from etl import open_release
    from etl.errors import InputUnreadable, ValidationFailed

    with pytest.raises(InputUnreadable):
        open_release(tmp_path)
    rel = open_release(release_dir)
    from etl.use.query import QueryError

    with pytest.raises(QueryError, match="invalid expression"):
        rel.cases("her2 ==== 1")
    with pytest.raises(QueryError, match="unknown column 'her3'"):
        rel.cases("her3 == 1")
    with pytest.raises(InputUnreadable, match="no phase 9"):
        rel.image("DUKE_001", 9)
    with pytest.raises(ValidationFailed):
        rel.split("validation")


def test_table_with_paths_for_query(release_dir: Path) -> None:
    from etl.use.release import is_release, table_with_paths

    assert is_release(release_dir)
    df = table_with_paths(release_dir)
    row = df[df["patient_id"] == "ISPY1_1001"].iloc[0]
    parts = row["image_paths"].split(";")
    assert len(parts) == row["num_phases"] and parts[0].endswith("images/ISPY1_1001/ispy1_1001_0000.nii.gz")
    assert isinstance(df, pd.DataFrame) and "mask_path" in df.columns


def test_table_is_typed_and_text_table_is_the_published_form(release_dir: Path) -> None:
    import pyarrow.parquet as pq

    from etl import open_release

    rel = open_release(release_dir)
    typed = pq.read_table(release_dir / "clinical_and_imaging_info.parquet").to_pandas().set_index("patient_id")
    t = rel.table.set_index("patient_id")
    pid = t.index[0]
    times = t.at[pid, "acquisition_times"]
    assert isinstance(times, list) and all(isinstance(v, int) for v in times)
    assert times == list(typed.at[pid, "acquisition_times"])
    assert t.at[pid, "pixel_spacing"] == list(typed.at[pid, "pixel_spacing"])
    assert str(t["acquisition_date"].dtype).startswith("datetime64")
    text = rel.text_table.set_index("patient_id")
    assert text.at[pid, "acquisition_times"] == "[" + ", ".join(str(v) for v in times) + "]"
    # cases() filters like `mamamia query` and returns typed rows
    assert isinstance(rel.cases("num_phases >= 1").iloc[0]["acquisition_times"], list)
