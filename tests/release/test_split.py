"""Split: deterministic for a seed, stratified by dataset x pcr x tumor_subtype, folds, nnU-Net JSON."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from etl.split import SplitSettings, make_split, merge_small_strata, read_split, stratum_keys


@pytest.fixture(scope="module")
def v1(v1_table: pd.DataFrame) -> pd.DataFrame:
    return v1_table


def test_same_seed_same_split_other_seed_other_split(v1: pd.DataFrame) -> None:
    a = make_split(v1, SplitSettings(seed=7)).frame()
    b = make_split(v1.sample(frac=1.0, random_state=3), SplitSettings(seed=7)).frame()  # row order irrelevant
    c = make_split(v1, SplitSettings(seed=8)).frame()
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(c)
    assert (a["split"] != c["split"]).sum() > 50


def test_stratified_on_real_table(v1: pd.DataFrame) -> None:
    res = make_split(v1, SplitSettings(seed=42, test_fraction=0.2, folds=5))
    a = res.assignments
    assert len(a) == 1506 and a["patient_id"].is_unique
    n_test = int((a["split"] == "test").sum())
    assert n_test == round(1506 * 0.2)
    # every final stratum is within one case of its exact share
    bal = res.balance()
    assert ((bal["test"] - bal["n"] * 0.2).abs() <= 1.0).all()
    # marginals: each collection and each pcr value near 20 % test
    merged = a.merge(v1[["patient_id", "dataset", "pcr"]], on="patient_id")
    for _, grp in merged.groupby("dataset"):
        share = (grp["split"] == "test").mean()
        assert 0.18 <= share <= 0.22
    for value in (0, 1):
        grp = merged[merged["pcr"] == value]
        assert abs((grp["split"] == "test").mean() - 0.2) < 0.01
    # folds only on train, sizes balanced
    assert a.loc[a["split"] == "test", "fold"].isna().all()
    sizes = a.loc[a["split"] == "train", "fold"].value_counts()
    assert sorted(sizes.index) == [0, 1, 2, 3, 4]
    assert sizes.max() - sizes.min() <= 1


def test_small_strata_are_merged_within_their_collection(v1: pd.DataFrame) -> None:
    keys = stratum_keys(v1)
    final, merges = merge_small_strata(keys, 5)
    assert merges, "the real table has strata under 5 cases"
    for orig, new in merges.items():
        assert orig.split("|")[0] == new.split("|")[0], (orig, new)  # collections never mixed
        assert (keys == orig).sum() < 5
    assert final.value_counts().min() >= 5
    # missing pcr is its own stratum before merging
    assert any(k.split("|")[1] == "missing" for k in keys)


def test_cli_writes_csv_json_and_balance_table(cli, v1_path, tmp_path) -> None:
    out = tmp_path / "splits" / "train_test_splits.csv"
    res = cli("split", v1_path, "--out", out, "--seed", "3", "--folds", "4", "--test-fraction", "0.25")
    assert res.exit_code == 0, res.stderr
    assert "stratum" in res.stdout and "merged" in res.stdout and "ISPY2|1|triple_negative" in res.stdout
    df = read_split(out)
    assert list(df.columns) == ["patient_id", "split", "fold"]
    assert (df["split"] == "test").sum() == 377  # 376.5 rounds half up
    folds = json.loads((out.parent / "splits_final.json").read_text())
    assert len(folds) == 4
    train_ids = set(df.loc[df["split"] == "train", "patient_id"].str.lower())
    vals = [set(f["val"]) for f in folds]
    assert set().union(*vals) == train_ids
    assert sum(len(v) for v in vals) == len(train_ids)  # disjoint
    for f in folds:
        assert set(f["train"]) | set(f["val"]) == train_ids
    # same command, same bytes
    again = tmp_path / "again.csv"
    assert cli("split", v1_path, "--out", again, "--seed", "3", "--folds", "4", "--test-fraction", "0.25").exit_code == 0
    assert again.read_bytes() == out.read_bytes()


def test_bad_settings_are_config_errors(cli, v1_path, tmp_path) -> None:
    res = cli("split", v1_path, "--out", tmp_path / "x.csv", "--test-fraction", "1.5")
    assert res.exit_code == 2  # a bad option value is a usage error
    assert "--test-fraction" in res.stderr and "Traceback" not in res.stderr
