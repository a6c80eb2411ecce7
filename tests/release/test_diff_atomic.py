"""Release diff (known change reported exactly; CHANGELOG with `previous:`) and atomic builds."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.release.release_helpers import CASES, make_staged

MAMAMIA = str(Path(sys.executable).parent / "mamamia")


def _build(definition: Path, out: Path, **overrides):  # type: ignore[no-untyped-def]
    from etl.release.build import build_release
    from etl.release.definition import load_definition

    return build_release(load_definition(definition, **overrides), out)


def test_diff_reports_exactly_the_known_change(staged, release_dir: Path, tmp_path: Path, cli) -> None:
    from etl.release.tableio import read_table, write_table

    df = read_table(staged.table)
    old_age = int(df.loc[df["patient_id"] == "NACT_02", "age"].iloc[0])
    df.loc[df["patient_id"] == "NACT_02", "age"] = old_age + 1
    table_b = tmp_path / "table_b.parquet"
    write_table(df, table_b)
    b = tmp_path / "b"
    _build(staged.definition, b, table=table_b, previous=release_dir)

    res = cli("release", "diff", release_dir, b, "--format", "json")
    assert res.exit_code == 0, res.stderr
    d = json.loads(res.stdout)
    assert d["cases_added"] == [] and d["cases_removed"] == []
    assert d["variables"] == {"age": {"changed": 1, "examples": [{"patient_id": "NACT_02", "old": old_age, "new": old_age + 1}]}}
    assert d["files"]["added"] == [] and d["files"]["removed"] == []
    # only table-derived metadata changes; no image, mask or per-case file
    assert set(d["files"]["changed"]) == {"CHANGELOG.md", "clinical_and_imaging_info.parquet",
                                          "clinical_and_imaging_info.xlsx", "croissant.json", "provenance.json"}
    text = cli("release", "diff", release_dir, b).stdout
    assert f"age: 1 (e.g. NACT_02: {old_age} -> {old_age + 1})" in text
    # `previous` puts the same diff into the new release's CHANGELOG, keeping the old entries
    changelog = (b / "CHANGELOG.md").read_text()
    assert "Changes from test-release-0.1.0 to test-release-0.1.0" in changelog
    assert f"age: 1 (e.g. NACT_02: {old_age} -> {old_age + 1})" in changelog
    assert "No previous release given" in changelog  # the first release's entry carried forward


def test_diff_removed_case_and_files(staged, release_dir: Path, tmp_path: Path) -> None:
    from etl.release.diff import diff_releases

    s = make_staged(tmp_path, ids=[c for c in CASES if c != "ISPY1_1002"])
    b = tmp_path / "b"
    _build(s.definition, b)
    d = diff_releases(release_dir, b)
    assert d["cases_removed"] == ["ISPY1_1002"] and d["cases_added"] == []
    removed = d["files"]["removed"]
    assert "patient_info_files/ispy1_1002.json" in removed
    assert sorted(r for r in removed if r.startswith("images/")) == [
        f"images/ISPY1_1002/ispy1_1002_{i:04d}.nii.gz" for i in range(3)]


def test_injected_failure_leaves_previous_release_untouched(staged, release_copy: Path, monkeypatch) -> None:
    import etl.release.documents as documents

    before = (release_copy / "SHA256SUMS").read_bytes()

    def boom(*a, **k):  # type: ignore[no-untyped-def]
        raise OSError("disk full (injected)")

    monkeypatch.setattr(documents, "licenses", boom)
    with pytest.raises(OSError, match="injected"):
        _build(staged.definition, release_copy)
    assert (release_copy / "SHA256SUMS").read_bytes() == before
    assert not release_copy.with_name(release_copy.name + ".partial").exists()
    from etl.release.verify import verify_release

    assert verify_release(release_copy) == []


def _kill_mid_build(definition: Path, out: Path) -> None:
    """Start a real `mamamia release build`, SIGKILL it as soon as its .partial directory exists."""
    partial = out.with_name(out.name + ".partial")
    proc = subprocess.Popen([MAMAMIA, "release", "build", str(definition), "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not partial.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.001)
    assert proc.poll() is None, "build finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


@pytest.mark.slow
def test_killed_build_leaves_no_release_and_keeps_the_previous(staged, tmp_path: Path) -> None:
    out = tmp_path / "rel"
    _kill_mid_build(staged.definition, out)
    assert not out.exists()
    # the next build clears the stale partial and completes
    res = subprocess.run([MAMAMIA, "release", "build", str(staged.definition), "--out", str(out)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert not out.with_name("rel.partial").exists()
    before = (out / "SHA256SUMS").read_bytes()
    # killing a rebuild over an existing release leaves that release as it was
    _kill_mid_build(staged.definition, out)
    assert (out / "SHA256SUMS").read_bytes() == before
    from etl.release.verify import verify_release

    assert verify_release(out) == []
