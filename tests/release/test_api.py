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
    expert_img = rel.mask("DUKE_001")
    assert expert_img.extra["mask_kind"] == "expert"
    mask = np.asanyarray(expert_img.dataobj)
    assert mask[EXPERT_BOX].all() and mask.sum() == mask[EXPERT_BOX].size
    auto_img = rel.mask("DUKE_001", "automatic")
    auto = np.asanyarray(auto_img.dataobj)
    assert auto.sum() == mask.sum() and not np.array_equal(auto, mask) and auto_img.extra["mask_kind"] == "automatic"
    assert rel.patient_info("DUKE_001")["primary_lesion"]["mask"] == "expert"


def test_splits_are_the_folds_of_splits_final(release_dir: Path) -> None:
    """train/val of fold k are exactly splits_final.json[k] (nnU-Net's own fold definition)."""
    import json

    from etl import open_release

    rel = open_release(release_dir)
    train, test = rel.split("train"), rel.split("test")
    assert len(train) + len(test) == 8 and set(train["patient_id"]).isdisjoint(test["patient_id"])
    assert train["fold"].notna().all() and test["fold"].isna().all()
    folds = json.loads((release_dir / "splits_final.json").read_text())
    for k, fold in enumerate(folds):
        tr, va = rel.split("train", fold=k), rel.split("val", fold=k)
        assert sorted(rel.nnunet_case_id(p) for p in tr["patient_id"]) == sorted(fold["train"])
        assert sorted(rel.nnunet_case_id(p) for p in va["patient_id"]) == sorted(fold["val"])
        assert set(tr["patient_id"]).isdisjoint(va["patient_id"]) and len(tr) + len(va) == len(train)
        assert (va["fold"] == k).all() and (tr["fold"] != k).all()


def test_mask_kind_is_explicit(release_dir: Path) -> None:
    from etl import open_release
    from etl.errors import InputUnreadable, ValidationFailed

    rel = open_release(release_dir)
    # ISPY2_102011 (every 4th staged case) has no masks at all; give another case only an automatic mask
    no_masks = [p for p in rel.table["patient_id"] if rel.paths(p)["mask_path"] is None]
    assert no_masks
    with pytest.raises(InputUnreadable, match=f"no expert mask for {no_masks[0]}"):
        rel.mask(no_masks[0])
    with pytest.raises(InputUnreadable, match=f"no mask for {no_masks[0]}"):
        rel.mask(no_masks[0], kind="any")
    with pytest.raises(ValidationFailed, match="mask kind must be one of expert, automatic, any"):
        rel.mask("DUKE_001", kind="manual")


def test_mask_any_says_which_it_returned(release_copy: Path) -> None:
    from etl import open_release
    from etl.errors import InputUnreadable

    rel = open_release(release_copy)
    rel.layout.expert_mask("DUKE_001").unlink()  # now only the automatic mask is there
    with pytest.raises(InputUnreadable, match="no expert mask for DUKE_001; kind='automatic' or kind='any'"):
        rel.mask("DUKE_001")
    img = rel.mask("DUKE_001", kind="any")
    assert img.extra["mask_kind"] == "automatic"
    assert np.asanyarray(img.dataobj).sum() > 0
    case = rel.load_case("DUKE_001", mask="any")
    assert case.mask_kind == "automatic"


def test_load_case_is_one_4d_array_with_affine_and_mask(release_dir: Path) -> None:
    from etl import open_release

    rel = open_release(release_dir)
    n = int(rel.table.set_index("patient_id").at["DUKE_001", "num_phases"])
    case = rel.load_case("DUKE_001")
    assert case.image.shape == (12, 10, 6, n) and case.phases == tuple(range(n))
    for p in range(n):  # each channel is that phase's voxels, unchanged
        assert np.array_equal(case.image[..., p], np.asanyarray(rel.image("DUKE_001", p).dataobj))
    assert np.allclose(case.affine, rel.image("DUKE_001", 0).affine)
    assert case.mask is not None and case.mask_kind == "expert" and case.mask[EXPERT_BOX].all()
    two = rel.load_case("DUKE_001", phases=[0, 1], mask=None)
    assert two.image.shape[-1] == 2 and two.mask is None and two.mask_kind is None


def test_errors_are_one_liners(release_dir: Path, tmp_path: Path) -> None:
    from etl import open_release
    from etl.errors import InputUnreadable, ValidationFailed
    from etl.use.release import UnknownPatient

    with pytest.raises(InputUnreadable):
        open_release(tmp_path)
    rel = open_release(release_dir)
    from etl.use.query import QueryError

    with pytest.raises(QueryError, match="invalid expression"):
        rel.cases("her2 ==== 1")
    with pytest.raises(QueryError, match="unknown column 'her3'"):
        rel.cases("her3 == 1")
    with pytest.raises(InputUnreadable, match="no phase 9 for DUKE_001"):
        rel.image("DUKE_001", 9)
    for call in (lambda: rel.image("DUKE_999", 1), lambda: rel.mask("DUKE_999"), lambda: rel.load_case("DUKE_999"),
                 lambda: rel.patient_info("DUKE_999")):
        with pytest.raises(UnknownPatient, match="^unknown patient DUKE_999") as info:
            call()
        assert isinstance(info.value, KeyError) and info.value.exit_code == 2
    with pytest.raises(ValidationFailed, match="one of train, val, test"):
        rel.split("validation")
    with pytest.raises(ValidationFailed, match="needs a fold"):
        rel.split("val")
    with pytest.raises(ValidationFailed, match="no fold 7"):
        rel.split("train", fold=7)
    with pytest.raises(ValidationFailed, match="test split has no folds"):
        rel.split("test", fold=0)


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
