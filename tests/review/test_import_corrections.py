"""`review import`: exact correction statistics from known voxel sets, re-oriented masks put back, other grids
refused naming the file, --replace keeps the old mask, one line per fault, a killed import leaves no
half-written mask, and the release built after the import verifies."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from tests.review.corrections_helpers import read, review_staged, save_like, voxel_cm3


@pytest.fixture
def assigned(cli, tmp_path: Path):  # type: ignore[no-untyped-def]
    st = review_staged(tmp_path / "s")
    out = tmp_path / "packages"
    r = cli("review", "assign", st.root, "--experts", "ana,ben", "--seed", "1", "--out", out)
    assert r.exit_code == 0, r.stderr
    rows = list(csv.DictReader((out / "assignments.csv").open()))
    return st, out, {e: sorted(r["patient_id"] for r in rows if r["expert"] == e) for e in ("ana", "ben")}


def _edit(folder: Path, pid: str, add: list[tuple[int, int, int]], remove: list[tuple[int, int, int]]) -> np.ndarray:
    path = folder / f"{pid}_mask.nii.gz"
    data = read(path).astype(np.uint8)
    for v in add:
        assert data[v] == 0
        data[v] = 1
    for v in remove:
        assert data[v] == 1
        data[v] = 0
    save_like(path, data, folder / f"{pid}_0001.nii.gz")
    return data


def _edit_all(folder: Path, pids: list[str]) -> dict[str, np.ndarray]:
    return {pid: _edit(folder, pid, add=[(0, 0, 0), (11, 9, 5)], remove=[(4, 2, 1)]) for pid in pids}


def test_exact_added_removed_volume_and_dice(cli, assigned) -> None:  # type: ignore[no-untyped-def]
    st, out, who = assigned
    pid = who["ana"][0]
    folder = out / "ana"
    auto = read(folder / f"{pid}_mask.nii.gz") > 0
    add = [(0, 0, 0), (0, 0, 1), (11, 9, 5), (9, 8, 5)]       # far from the lesion
    remove = [(4, 2, 1), (5, 3, 2), (6, 4, 3)]               # inside the automatic mask
    expert = _edit(folder, pid, add, remove) > 0
    for other in who["ana"][1:]:
        _edit(folder, other, add=[(0, 0, 0)], remove=[])
    r = cli("review", "import", folder, "--into", st.root, "--expert", "ana")
    assert r.exit_code == 0, r.stderr
    assert f"imported {len(who['ana'])} mask(s)" in r.stdout
    written = read(st.root / "segmentations" / "expert" / f"{pid.lower()}.nii.gz")
    assert written.dtype == np.uint8 and np.array_equal(written > 0, expert)
    df = pd.read_parquet(st.root / "segmentations" / "corrections.parquet")
    row = df[df["patient_id"] == pid].iloc[0]
    assert row["expert"] == "ana" and bool(row["current"]) and int(row["version"]) == 1
    assert row["added_cm3"] == pytest.approx(len(add) * voxel_cm3(folder / f"{pid}_0001.nii.gz"), rel=1e-12)
    assert row["removed_cm3"] == pytest.approx(len(remove) * voxel_cm3(folder / f"{pid}_0001.nii.gz"), rel=1e-12)
    inter = np.logical_and(auto, expert).sum()
    assert row["dice"] == pytest.approx(2 * inter / (auto.sum() + expert.sum()), rel=1e-12)
    # HD95 in mm: the far voxel (0, 0, 0) is at least 3 voxels (2.4 mm) from the lesion along x alone
    assert row["hd95_mm"] > 0 and row["msd_mm"] > 0
    from etl.hashing import sha256_file

    assert row["expert_sha256"] == sha256_file(st.root / "segmentations" / "expert" / f"{pid.lower()}.nii.gz")
    assert row["automatic_sha256"] == sha256_file(st.root / "segmentations" / "automatic" / f"{pid.lower()}.nii.gz")
    # a rerun of the same package is a no-op
    r = cli("review", "import", folder, "--into", st.root, "--expert", "ana")
    assert r.exit_code == 0 and "already imported" in r.stdout
    assert len(pd.read_parquet(st.root / "segmentations" / "corrections.parquet")) == len(who["ana"])


def test_reoriented_mask_imports_other_grid_is_refused_with_the_file_named(cli, assigned) -> None:  # type: ignore[no-untyped-def]
    st, out, who = assigned
    folder = out / "ben"
    pids = who["ben"]
    edited = _edit_all(folder, pids)
    # 1st: re-saved by a viewer in another orientation of the same world grid (axes permuted and flipped)
    p0 = folder / f"{pids[0]}_mask.nii.gz"
    img = nib.load(str(p0))
    turned = img.as_reoriented(np.array([[1, -1], [2, 1], [0, -1]]))
    assert turned.shape != img.shape
    nib.save(nib.Nifti1Image(np.asarray(turned.dataobj), turned.affine), str(p0))
    # 2nd: on another grid (shifted by 3 mm): refused
    p1 = folder / f"{pids[1]}_mask.nii.gz"
    shifted = img.affine.copy()
    shifted[0, 3] += 3.0
    nib.save(nib.Nifti1Image(edited[pids[1]], shifted), str(p1))
    r = cli("review", "import", folder, "--into", st.root, "--expert", "ben")
    assert r.exit_code == 1
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "not on the grid" in errors[0] and str(p1) in errors[0]
    assert "saved in another orientation" in r.stdout
    got = read(st.root / "segmentations" / "expert" / f"{pids[0].lower()}.nii.gz")
    assert np.array_equal(got, edited[pids[0]])
    assert not (st.root / "segmentations" / "expert" / f"{pids[1].lower()}.nii.gz").exists()
    assert (st.root / "segmentations" / "expert" / f"{pids[2].lower()}.nii.gz").exists()  # the others import


def test_faults_one_line_each_others_import(cli, assigned) -> None:  # type: ignore[no-untyped-def]
    st, out, who = assigned
    folder = out / "ana"
    a, b, c = who["ana"]
    _edit_all(folder, [a])
    (folder / f"{b}_mask.nii.gz").unlink()                                  # missing from the package
    (folder / f"{c}_mask.nii.gz").write_bytes(b"\x1f\x8b not a nifti")      # unreadable
    stray = folder / f"{who['ben'][0]}_mask.nii.gz"                          # a case of another expert
    (out / "ben" / stray.name).rename(stray)
    (folder / f"{a}_mask (copy).nii.gz").write_bytes((folder / f"{a}_mask.nii.gz").read_bytes())  # a stray save
    r = cli("review", "import", folder, "--into", st.root, "--expert", "ana")
    assert r.exit_code == 1
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 3, r.stderr
    assert any(b in e and "missing" in e for e in errors)
    assert any(f"{c}_mask.nii.gz" in e and "cannot read" in e for e in errors)
    assert any(stray.name in e and "not assigned to ana" in e for e in errors)
    assert "Traceback" not in r.stderr
    assert f"{a}_mask (copy).nii.gz: not a package file name, ignored" in r.stdout
    assert (st.root / "segmentations" / "expert" / f"{a.lower()}.nii.gz").exists()


def test_binary_empty_no_lesion_and_unchanged(cli, assigned) -> None:  # type: ignore[no-untyped-def]
    st, out, who = assigned
    folder = out / "ana"
    a, b, c = who["ana"]
    labels = _edit(folder, a, add=[(0, 0, 0)], remove=[]) * 2               # labels 0/2, plus a 3 below
    labels[1, 1, 1] = 3
    save_like(folder / f"{a}_mask.nii.gz", labels, folder / f"{a}_0001.nii.gz", dtype=np.int16)
    save_like(folder / f"{b}_mask.nii.gz", np.zeros(labels.shape), folder / f"{b}_0001.nii.gz")  # empty, unmarked
    r = cli("review", "import", folder, "--into", st.root, "--expert", "ana")    # c: left as sent
    assert r.exit_code == 1
    assert "label values 0, 2, 3" in r.stdout
    assert f"{b}_mask.nii.gz" in r.stderr and "no_lesion" in r.stderr
    assert f"{c}_mask.nii.gz" in r.stderr and "unchanged since it was sent" in r.stderr
    got = read(st.root / "segmentations" / "expert" / f"{a.lower()}.nii.gz")
    assert set(np.unique(got)) == {0, 1} and got[1, 1, 1] == 1
    # the expert marks b as no_lesion: the empty mask imports
    rows = list(csv.DictReader((folder / "manifest.csv").open()))
    for r_ in rows:
        r_["no_lesion"] = "yes" if r_["patient_id"] == b else r_["no_lesion"]
    with (folder / "manifest.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    r = cli("review", "import", folder, "--into", st.root, "--expert", "ana")
    assert (st.root / "segmentations" / "expert" / f"{b.lower()}.nii.gz").exists()
    df = pd.read_parquet(st.root / "segmentations" / "corrections.parquet").set_index("patient_id")
    assert bool(df.loc[b, "no_lesion"]) and df.loc[b, "expert_cm3"] == 0 and df.loc[b, "dice"] == 0


def test_replace_keeps_the_old_mask(cli, assigned) -> None:  # type: ignore[no-untyped-def]
    st, out, who = assigned
    folder = out / "ana"
    _edit_all(folder, who["ana"])
    assert cli("review", "import", folder, "--into", st.root, "--expert", "ana").exit_code == 0
    pid = who["ana"][0]
    target = st.root / "segmentations" / "expert" / f"{pid.lower()}.nii.gz"
    first = target.read_bytes()
    _edit(folder, pid, add=[(1, 0, 0)], remove=[])
    r = cli("review", "import", folder, "--into", st.root, "--expert", "ana")
    assert r.exit_code == 1 and "--replace" in r.stderr and str(target) in r.stderr
    assert target.read_bytes() == first
    r = cli("review", "import", folder, "--into", st.root, "--expert", "ana", "--replace")
    assert r.exit_code == 0, r.stderr
    kept = st.root / "segmentations" / "expert_replaced" / f"{pid.lower()}.v1.nii.gz"
    assert kept.read_bytes() == first and target.read_bytes() != first
    df = pd.read_parquet(st.root / "segmentations" / "corrections.parquet")
    mine = df[df["patient_id"] == pid].sort_values("version")
    assert list(mine["version"]) == [1, 2] and list(mine["current"]) == [False, True]


_KILLED_IMPORT = """
import os, sys, time
import etl.atomic as atomic
real = os.replace
def slow_replace(src, dst):
    if str(dst).endswith('.nii.gz') and '/segmentations/expert/' in str(dst):
        open(sys.argv[3], 'w').write(str(src))
        time.sleep(60)
    return real(src, dst)
atomic.os.replace = slow_replace
from etl.cli import run
sys.exit(run(['review', 'import', sys.argv[1], '--into', sys.argv[2], '--expert', 'ana']))
"""


def test_killed_import_leaves_no_half_written_mask(cli, assigned, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    st, out, who = assigned
    folder = out / "ana"
    _edit_all(folder, who["ana"])
    marker = tmp_path / "writing"
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_IMPORT, str(folder), str(st.root), str(marker)],
                            cwd=Path(__file__).resolve().parents[2])
    try:
        deadline = time.monotonic() + 60
        while not marker.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert marker.exists(), "the import never reached its first mask write"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    expert_dir = st.root / "segmentations" / "expert"
    assert sorted(p.name for p in expert_dir.glob("*.nii.gz")) == []       # nothing under a final name
    assert Path(marker.read_text()).exists()                              # only the temp file, fully written
    r = cli("review", "import", folder, "--into", st.root, "--expert", "ana")
    assert r.exit_code == 0, r.stderr
    assert sorted(p.name for p in expert_dir.iterdir()) == sorted(f"{p.lower()}.nii.gz" for p in who["ana"])


def test_release_built_after_import_verifies(cli, assigned, tmp_path: Path, mlcroissant) -> None:  # type: ignore[no-untyped-def]
    """Ratings and corrections go into the release (raters anonymized as the definition says), the card and
    Croissant describe them, verify passes and catches a mask off its image's grid, diff names the masks."""
    import json
    import shutil

    from etl.hashing import sha256_file
    from etl.review.store import add_rating, export_ratings, open_store

    st, out, who = assigned
    before = tmp_path / "release-before"
    assert cli("release", "build", st.definition, "--out", before).exit_code == 0
    with open_store(tmp_path / "review.sqlite") as db:
        for pid in who["ana"] + who["ben"]:
            auto = sha256_file(st.root / "segmentations" / "automatic" / f"{pid.lower()}.nii.gz")
            add_rating(db, pid, "Dr. Zed", "poor", comment="misses the rim", rated_at="2026-01-01T10:00:00Z",
                       mask_sha256="0" * 64)                        # rated an older mask: stale
            add_rating(db, pid, "Dr. Amy", "good", rated_at="2026-01-02T10:00:00Z", mask_sha256=auto)
        export_ratings(db, st.root / "segmentation_quality.csv")
    for expert in ("ana", "ben"):
        _edit_all(out / expert, who[expert])
        assert cli("review", "import", out / expert, "--into", st.root, "--expert", expert).exit_code == 0
    rel = tmp_path / "release"
    r = cli("release", "build", st.definition, "--out", rel)
    assert r.exit_code == 0, r.stderr
    assert "6 expert and 6 automatic masks" in r.stdout
    r = cli("release", "verify", rel)
    assert r.exit_code == 0, r.stdout + r.stderr
    again = tmp_path / "again"                                      # same inputs, same bytes
    assert cli("release", "build", st.definition, "--out", again).exit_code == 0
    assert (again / "SHA256SUMS").read_bytes() == (rel / "SHA256SUMS").read_bytes()

    df = pd.read_parquet(rel / "segmentations" / "corrections.parquet")
    assert sorted(df["patient_id"]) == sorted(who["ana"] + who["ben"])
    assert set(df["expert"]) == {"expert_1", "expert_2"}            # anonymize_raters: true in v1.yaml
    for pid, sha in zip(df["patient_id"], df["expert_sha256"]):
        assert sha256_file(rel / "segmentations" / "expert" / f"{pid.lower()}.nii.gz") == sha
    q = pd.read_csv(rel / "segmentation_quality.csv", dtype=str, keep_default_na=False)
    assert len(q) == 12 and set(q["rater"]) == {"rater_1", "rater_2"}
    assert set(q.loc[q["rater"] == "rater_1", "score"]) == {"poor"}   # Dr. Zed rated first
    assert "Dr." not in (rel / "segmentation_quality.csv").read_text()
    assert set(q.loc[q["rater"] == "rater_1", "stale"]) == {"true"} and set(q.loc[q["rater"] == "rater_2", "stale"]) == {"false"}
    crois = json.loads((rel / "croissant.json").read_text())
    ids = {d["@id"] for d in crois["distribution"]}
    assert {"segmentation_quality.csv", "segmentations/corrections.parquet"} <= ids
    assert {"segmentation_quality", "corrections"} <= {r["@id"] for r in crois["recordSet"]}
    ds = mlcroissant.Dataset(jsonld=str(rel / "croissant.json"))
    assert len(list(ds.records("segmentation_quality"))) == 12
    dice = {r["corrections/patient_id"].decode(): r["corrections/dice"] for r in ds.records("corrections")}
    assert dice == pytest.approx(dict(zip(df["patient_id"], df["dice"])))
    card = (rel / "data_dictionary.md").read_text()
    assert "`segmentation_quality.csv`" in card and "`segmentations/corrections.parquet`" in card

    r = cli("release", "diff", before, rel)
    assert r.exit_code == 0
    assert f"expert masks: 6 added ({', '.join(sorted(who['ana'] + who['ben']))})" in r.stdout
    assert "automatic masks: 0 added, 0 removed, 0 changed" in r.stdout

    # the figures read a release as well as a staged directory
    r = cli("review", "figures", rel, "--out", tmp_path / "figs", "--no-cases")
    assert r.exit_code == 0 and (tmp_path / "figs" / "volume_changes.png").exists(), r.stderr

    # a release is checksummed: corrections go into the staged directory, never into a release
    r = cli("review", "import", out / "ana", "--into", rel, "--expert", "ana")
    assert r.exit_code == 1 and "built release" in r.stderr

    # an expert mask moved off its image's grid is reported by verify, naming the file
    bad = tmp_path / "bad"
    shutil.copytree(rel, bad)
    pid = who["ana"][0]
    mask = bad / "segmentations" / "expert" / f"{pid.lower()}.nii.gz"
    img = nib.load(str(mask))
    moved = img.affine.copy()
    moved[1, 3] += 4.0
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj), moved), str(mask))
    r = cli("release", "verify", bad, "--no-phi")
    assert r.exit_code == 1
    grid = [line for line in r.stdout.splitlines() if "grid" in line]
    assert grid and f"segmentations/expert/{pid.lower()}.nii.gz" in grid[0]
    assert any("differs from the one the correction describes" in line for line in r.stdout.splitlines())


def test_two_experts_importing_at_once_lose_nothing(assigned) -> None:  # type: ignore[no-untyped-def]
    from concurrent.futures import ThreadPoolExecutor

    from etl.layout import Layout
    from etl.review.corrections import import_package

    st, out, who = assigned
    for expert in ("ana", "ben"):
        _edit_all(out / expert, who[expert])
    layout = Layout.from_definition(st.root)
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda e: import_package(out / e, layout, e), ["ana", "ben"]))
    assert [len(r.imported) for r in results] == [3, 3] and not any(r.faults for r in results)
    df = pd.read_parquet(st.root / "segmentations" / "corrections.parquet")
    assert sorted(df["patient_id"]) == sorted(who["ana"] + who["ben"])
