"""Blinded balanced assignment: counts and quality mix per expert within +-1, datasets balanced, the same
seed gives the same packages, and nothing in a package says how the mask was made or judged."""

from __future__ import annotations

import csv
import gzip
import random
from collections import Counter
from pathlib import Path

import pytest

from etl.review.assign import STRATA, CaseRecord, assign, expert_names
from tests.review.corrections_helpers import review_staged

DATASETS = {"DUKE": 291, "ISPY1": 171, "ISPY2": 980, "NACT": 64}


def _records(n: int, seed: int) -> list[CaseRecord]:
    rng = random.Random(seed)
    ds = rng.choices(list(DATASETS), weights=list(DATASETS.values()), k=n)
    strata = rng.choices(STRATA, weights=[6, 4, 2, 1, 3], k=n)
    return [CaseRecord(f"{d}_{i:05d}", d, s) for i, (d, s) in enumerate(zip(ds, strata))]


def _spread(assignments, experts, key):  # type: ignore[no-untyped-def]
    counts = Counter((a.expert, getattr(a, key)) for a in assignments)
    values = {getattr(a, key) for a in assignments}
    return max(max(counts[(e, v)] for e in experts) - min(counts[(e, v)] for e in experts) for v in values)


@pytest.mark.parametrize("n, n_experts, seed", [(7, 3, 0), (40, 4, 1), (101, 6, 2), (250, 16, 3), (1506, 16, 4),
                                                (12, 16, 5)])
def test_counts_quality_mix_and_datasets_within_one(n: int, n_experts: int, seed: int) -> None:
    recs = _records(n, seed)
    experts = expert_names(str(n_experts))
    plan = assign(recs, experts, seed=seed)
    assert sorted(a.patient_id for a in plan) == sorted(r.patient_id for r in recs)  # every case, once
    totals = Counter(a.expert for a in plan)
    assert max(totals[e] for e in experts) - min(totals[e] for e in experts) <= 1
    assert _spread(plan, experts, "stratum") <= 1
    assert _spread(plan, experts, "dataset") <= 1
    # the stratum of each case is the one it came with
    by_id = {r.patient_id: r for r in recs}
    assert all(by_id[a.patient_id].stratum == a.stratum and by_id[a.patient_id].dataset == a.dataset for a in plan)


def test_per_expert_takes_a_proportional_subset() -> None:
    recs = _records(600, 9)
    experts = expert_names("alice,bob,carol")
    plan = assign(recs, experts, seed=9, per_expert=70)
    assert Counter(a.expert for a in plan) == {"alice": 70, "bob": 70, "carol": 70}
    assert _spread(plan, experts, "stratum") <= 1
    # the subset keeps the population's quality mix (each stratum within one case per cell of its share)
    pop = Counter(r.stratum for r in recs)
    got = Counter(a.stratum for a in plan)
    for s, k in pop.items():
        assert abs(got[s] - k * 210 / 600) <= len(DATASETS) + 1


def test_deterministic_for_a_seed_and_different_for_another() -> None:
    recs = _records(120, 3)
    experts = expert_names("4")
    a = assign(recs, experts, seed=11)
    assert a == assign(list(reversed(recs)), experts, seed=11)  # input order does not matter
    assert a != assign(recs, experts, seed=12)


def test_expert_names() -> None:
    assert expert_names("3") == ["expert_01", "expert_02", "expert_03"]
    assert expert_names(" ana , ben ") == ["ana", "ben"]
    from etl.errors import UsageError

    for bad in ("../x", "a,A", "0", ""):
        with pytest.raises(UsageError) as info:  # a bad --experts value is a usage error: exit 2
            expert_names(bad)
        assert info.value.exit_code == 2


# ------------------------------------------------------------------------------------------------ packages

BLIND_WORDS = ("rating", "rated", "score", "method", "dice", "hd95", "nnunet", "nnu-net", "ftv", "good",
               "acceptable", "poor", "missed", "quality")


def _rate(db: Path, scores: dict[str, str]) -> None:
    from etl.review.store import add_rating, open_store

    with open_store(db) as store:
        for pid, s in scores.items():
            add_rating(store, pid, "rater_a", s, comment="looks fine, method ok")


def test_packages_are_complete_blinded_and_deterministic(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import nibabel as nib
    import numpy as np

    st = review_staged(tmp_path / "s")
    db = tmp_path / "review.sqlite"
    _rate(db, {"DUKE_001": "poor", "DUKE_002": "good", "ISPY1_1001": "missed"})
    runs = []
    for name in ("p1", "p2"):
        r = cli("review", "assign", st.root, "--experts", "ana,ben", "--db", db, "--seed", "5", "--out", tmp_path / name)
        assert r.exit_code == 0, r.stderr
        runs.append(tmp_path / name)
    assert "assigned 6 case(s) to 2 expert(s)" in r.stdout
    files = sorted(p.relative_to(runs[0]).as_posix() for p in runs[0].rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(runs[1]).as_posix() for p in runs[1].rglob("*") if p.is_file())
    for rel in files:  # same seed, same inputs: same bytes
        assert (runs[0] / rel).read_bytes() == (runs[1] / rel).read_bytes(), rel

    top = list(csv.DictReader((runs[0] / "assignments.csv").open()))
    assert Counter(r["expert"] for r in top) == {"ana": 3, "ben": 3}
    for expert in ("ana", "ben"):
        folder = runs[0] / expert
        rows = list(csv.DictReader((folder / "manifest.csv").open()))
        assert sorted(r["patient_id"] for r in rows) == sorted(r["patient_id"] for r in top if r["expert"] == expert)
        assert (folder / "INSTRUCTIONS.md").read_text().count("\n1. ") == 1
        for r in rows:
            pid = r["patient_id"]
            for col in ("image_0000", "image_0001", "mask"):
                from etl.hashing import sha256_file

                assert sha256_file(folder / r[col]) == r[f"{col}_sha256"]
            assert (folder / f"{pid}_0001.nii.gz").read_bytes() == (st.root / "images" / pid / f"{pid.lower()}_0001.nii.gz").read_bytes()
            mask = nib.load(str(folder / f"{pid}_mask.nii.gz"))
            img = nib.load(str(folder / f"{pid}_0001.nii.gz"))
            assert mask.get_data_dtype() == np.uint8 and mask.shape == img.shape
            assert np.allclose(mask.affine, img.affine)
            auto = np.asarray(nib.load(str(st.root / "segmentations" / "automatic" / f"{pid.lower()}.nii.gz")).dataobj)
            assert np.array_equal(np.asarray(mask.dataobj), (auto > 0).astype(np.uint8))

    # blinded: no rating, score, method or Dice anywhere in an expert's folder (NIfTI headers decompressed)
    for expert in ("ana", "ben"):
        for p in (runs[0] / expert).iterdir():
            data = p.read_bytes()
            text = (gzip.decompress(data)[:2048] if p.name.endswith(".gz") else data).decode("latin-1").lower()
            for word in BLIND_WORDS:
                assert word not in text, f"{word!r} in {p}"


def test_assign_refuses_existing_packages_and_reports_nothing_to_do(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    st = review_staged(tmp_path / "s")
    out = tmp_path / "pk"
    out.mkdir()
    (out / "work-in-progress.txt").write_text("x")
    r = cli("review", "assign", st.root, "--experts", "2", "--out", out)
    assert r.exit_code == 1 and "not empty" in r.stderr and str(out) in r.stderr
    assert (out / "work-in-progress.txt").exists()
    # with an expert mask on every automatic one there is nothing to assign unless --all
    import shutil

    shutil.copytree(st.root / "segmentations" / "automatic", st.root / "segmentations" / "expert")
    r = cli("review", "assign", st.root, "--experts", "2", "--out", tmp_path / "pk2")
    assert r.exit_code == 1 and "already have an expert mask" in r.stderr
    r = cli("review", "assign", st.root, "--experts", "2", "--all", "--per-expert", "2", "--out", tmp_path / "pk3")
    assert r.exit_code == 0, r.stderr
    assert "assigned 4 case(s)" in r.stdout and "2 left for a later round" in r.stdout


def test_assign_from_a_release(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A release is a source too: its own naming (provenance) and its table's datasets are used."""
    st = review_staged(tmp_path / "s")
    rel = tmp_path / "release"
    assert cli("release", "build", st.definition, "--out", rel).exit_code == 0
    r = cli("review", "assign", rel, "--experts", "3", "--seed", "2", "--out", tmp_path / "pk")
    assert r.exit_code == 0, r.stderr
    top = list(csv.DictReader((tmp_path / "pk" / "assignments.csv").open()))
    assert len(top) == 6 and Counter(t["expert"] for t in top) == {"expert_01": 2, "expert_02": 2, "expert_03": 2}
    for t in top:
        pid = t["patient_id"]
        assert t["dataset"] == pid.rsplit("_", 1)[0]
        sent = tmp_path / "pk" / t["expert"] / f"{pid}_0000.nii.gz"
        assert sent.read_bytes() == (rel / "images" / pid / f"{pid.lower()}_0000.nii.gz").read_bytes()
