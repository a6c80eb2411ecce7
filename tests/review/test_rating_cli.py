"""`mamamia review prepare / serve / export` through the real command line: resumable cache keyed by content,
one-line failures, a server killed with SIGKILL keeps every answered rating."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from etl.review.store import history, open_store
from tests.review.rating_helpers import REVIEWABLE, copy_staged, review_staged


@pytest.fixture(scope="session")
def staged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return review_staged(tmp_path_factory)


def _keys(cache: Path) -> dict[str, str]:
    return {pid: json.loads((cache / pid / "current.json").read_text())["key"] for pid in REVIEWABLE
            if (cache / pid / "current.json").exists()}


def test_prepare_is_resumable_and_keyed_by_content(staged: Path, tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    from etl.segment.io import write_nifti

    root = copy_staged(staged, tmp_path / "staged")
    res = cli("review", "prepare", root, "--jobs", "2")
    assert res.exit_code == 0, res.stderr
    assert "rendered 5 case(s), 0 already current" in res.stdout
    cache = root / "review"
    first = _keys(cache)
    pngs = {p: p.read_bytes() for p in cache.rglob("*.png")}
    assert len(pngs) == 30  # 5 cases x (post, subtraction) x (axial, coronal, sagittal)
    res = cli("review", "prepare", root)
    assert "rendered 0 case(s), 5 already current" in res.stdout
    # a new automatic mask for one case: only that case is redone, its old pictures go
    mask_path = root / "segmentations" / "automatic" / "duke_7002.nii.gz"
    like = nib.load(str(mask_path))
    write_nifti(mask_path, np.zeros(like.shape, np.uint8), like, level=1)
    res = cli("review", "prepare", root)
    assert "rendered 1 case(s), 4 already current" in res.stdout
    second = _keys(cache)
    assert [p for p in REVIEWABLE if first[p] != second[p]] == ["DUKE_7002"]
    assert sorted(d.name for d in (cache / "DUKE_7002").iterdir() if d.is_dir()) == [second["DUKE_7002"]]
    # same inputs, same bytes (a fresh render of the unchanged cases)
    again = copy_staged(staged, tmp_path / "again")
    assert cli("review", "prepare", again).exit_code == 0
    for p, data in pngs.items():
        if "DUKE_7002" not in str(p):
            assert (again / "review" / p.relative_to(cache)).read_bytes() == data


def test_prepare_reports_a_broken_case_and_does_the_others(staged: Path, tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    root = copy_staged(staged, tmp_path / "staged")
    broken = root / "segmentations" / "automatic" / "ispy1_7004.nii.gz"
    broken.write_bytes(broken.read_bytes()[:200])  # truncated by a crashed copy
    res = cli("review", "prepare", root)
    assert res.exit_code == 1
    assert "rendered 4 case(s)" in res.stdout
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "1 case(s) could not be rendered" in lines[0] and "ISPY1_7004" in lines[0]
    assert "Traceback" not in res.stderr
    res = cli("review", "prepare", tmp_path / "nowhere")
    assert res.exit_code == 2 and res.stderr.startswith("error: not a directory")


def test_export_cli(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    from etl.review.store import add_rating

    db = open_store(tmp_path / "r.sqlite")
    add_rating(db, "DUKE_7001", "alice", "good")
    add_rating(db, "DUKE_7001", "alice", "poor", comment="second look")
    res = cli("review", "export", "--db", tmp_path / "r.sqlite", "--out", tmp_path / "quality_scores.csv")
    assert res.exit_code == 0 and "1 rating(s)" in res.stdout
    df = pd.read_csv(tmp_path / "quality_scores.csv", dtype=str, keep_default_na=False)
    assert df[["patient_id", "rater", "score", "comment"]].values.tolist() == [["DUKE_7001", "alice", "poor", "second look"]]
    res = cli("review", "export", "--db", tmp_path / "r.sqlite", "--out", tmp_path / "all.parquet", "--history")
    assert res.exit_code == 0 and len(pd.read_parquet(tmp_path / "all.parquet")) == 2
    res = cli("review", "export", "--db", tmp_path / "none.sqlite", "--out", tmp_path / "x.csv")
    assert res.exit_code == 2 and "no ratings database" in res.stderr


def _start_server(args: list[str]) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "etl", "review", "serve", *args, "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    deadline = time.monotonic() + 60
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith("open "):
            return proc, line.split()[1]
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError(f"server did not start: {proc.stdout.read()}")


def test_sigkill_keeps_every_answered_rating(staged: Path, tmp_path: Path) -> None:
    db = tmp_path / "r.sqlite"
    proc, url = _start_server([str(staged), "--db", str(db), "--rater", "alice", "--cache", str(tmp_path / "cache")])
    answered = []
    try:
        assert url.startswith("http://127.0.0.1:")
        with httpx.Client(base_url=url.rstrip("/"), timeout=30) as c:
            for i in range(30):
                pid = REVIEWABLE[i % len(REVIEWABLE)]
                r = c.post("/api/ratings", json={"patient_id": pid, "score": "acceptable", "comment": f"#{i}"})
                assert r.status_code == 200
                answered.append(r.json()["id"])
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    store = open_store(db)
    assert sorted(r["id"] for r in store.query("SELECT id FROM ratings")) == sorted(answered)
    assert [r.comment for r in history(store, "DUKE_7001")] == ["#0", "#5", "#10", "#15", "#20", "#25"]


def test_serve_off_loopback_prints_a_token_url(staged: Path, tmp_path: Path) -> None:
    proc, url = _start_server([str(staged), "--db", str(tmp_path / "r.sqlite"), "--rater", "bob", "--host", "0.0.0.0",
                               "--cache", str(tmp_path / "cache")])
    try:
        assert "?token=" in url
        port = url.split(":")[2].split("/")[0]
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as c:
            assert c.get("/cases").status_code == 403
            token = url.split("token=")[1]
            assert c.get("/cases", params={"token": token}).status_code == 200
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20)
