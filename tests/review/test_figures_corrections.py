"""`review figures`: per-case correction overlays with the added (green) and removed (pink) voxels, and the
set figures per quality class; PNG bytes identical for identical inputs."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from etl.plotstyle import MASK_RGB
from tests.review.corrections_helpers import read, review_staged, save_like


def _pixels_near(png: bytes, rgb: tuple[int, int, int], tol: int = 40) -> int:
    from PIL import Image

    arr = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    return int((np.abs(arr - np.asarray(rgb)).max(axis=2) <= tol).sum())


def test_figures_show_the_corrections_and_are_deterministic(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from etl.review.store import add_rating, open_store

    st = review_staged(tmp_path / "s")
    db = tmp_path / "review.sqlite"
    r = cli("review", "assign", st.root, "--experts", "1", "--out", tmp_path / "pk")
    assert r.exit_code == 0, r.stderr
    folder = tmp_path / "pk" / "expert_01"
    pids = sorted(row["patient_id"] for row in csv.DictReader((folder / "manifest.csv").open()))
    with open_store(db) as store:
        for pid, score in zip(pids, ["good", "poor", "poor", "missed", "acceptable", "good"]):
            add_rating(store, pid, "ana", score)
    for i, pid in enumerate(pids):
        data = read(folder / f"{pid}_mask.nii.gz").astype(np.uint8)
        data[8:10, 2:6, 1:4] = 1        # added next to the lesion (automatic box is x 4..7)
        data[4, 2:6, 1:4] = 0 if i % 2 else data[4, 2:6, 1:4]   # removed on every other case
        save_like(folder / f"{pid}_mask.nii.gz", data, folder / f"{pid}_0001.nii.gz")
    r = cli("review", "import", folder, "--into", st.root, "--expert", "expert_01", "--db", db)
    assert r.exit_code == 0, r.stderr

    outs = [tmp_path / "f1", tmp_path / "f2"]
    r = cli("review", "figures", st.root, "--out", outs[0])
    assert r.exit_code == 0, r.stderr
    assert f"wrote {2 + len(pids)} figure(s)" in r.stdout
    r = cli("review", "figures", st.root, "--out", outs[1], "--no-cases")   # the set figures again
    assert r.exit_code == 0, r.stderr
    names = sorted(p.relative_to(outs[0]).as_posix() for p in outs[0].rglob("*.png"))
    assert names == sorted(["agreement_by_quality.png", "volume_changes.png"] + [f"cases/{p}_correction.png" for p in pids])
    for rel in ("agreement_by_quality.png", "volume_changes.png"):
        assert (outs[0] / rel).read_bytes() == (outs[1] / rel).read_bytes(), rel
    from etl.review.figures import correction_overlay
    from etl.layout import Layout

    lay = Layout.from_definition(st.root)
    title = (outs[0] / "cases" / f"{pids[0]}_correction.png")
    again = correction_overlay(lay.image(pids[0], 1), lay.automatic_mask(pids[0]), lay.expert_mask(pids[0]), "x")
    assert again[:8] == title.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert again == correction_overlay(lay.image(pids[0], 1), lay.automatic_mask(pids[0]), lay.expert_mask(pids[0]), "x")
    from etl.review.figures import load_corrections

    df, _ = load_corrections(st.root)
    assert sorted(df["quality"]) == sorted(["good", "poor", "poor", "missed", "acceptable", "good"])

    with_removal = (outs[0] / "cases" / f"{pids[1]}_correction.png").read_bytes()
    without = (outs[0] / "cases" / f"{pids[0]}_correction.png").read_bytes()
    assert _pixels_near(with_removal, MASK_RGB["added"]) > 50
    assert _pixels_near(with_removal, MASK_RGB["removed"]) > 50
    assert _pixels_near(without, MASK_RGB["removed"], tol=20) < _pixels_near(with_removal, MASK_RGB["removed"], tol=20)
    assert _pixels_near(without, MASK_RGB["automatic"]) > 0 and _pixels_near(without, MASK_RGB["expert"]) > 0


def test_figures_without_corrections_is_one_line(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    st = review_staged(tmp_path / "s")
    r = cli("review", "figures", st.root, "--out", tmp_path / "f")
    assert r.exit_code != 0 and "no corrections table" in r.stderr and "Traceback" not in r.stderr
