"""Packaging: the data locator, the CLI shell, README <-> CI, and a plain (non-editable) install."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_locator_finds_every_data_folder():
    from etl.resources import DATA_FOLDERS, data_path, data_root

    for folder in DATA_FOLDERS:
        assert data_root(folder).is_dir()
    assert data_path("schemas/clinical_imaging.yaml").is_file()
    with pytest.raises(FileNotFoundError):
        data_path("schemas/nope.yaml")


def test_readme_has_two_commands_and_ci_runs_the_test_one_verbatim():
    readme = (REPO / "README.md").read_text()
    blocks = re.findall(r"```(?:bash|sh)\n(.*?)```", readme.split("\n## ", 2)[1], flags=re.S)
    commands = [b.strip() for b in blocks]
    assert len(commands) == 2, commands
    assert "mamamia" in commands[0]
    assert "pytest" in commands[1]
    ci = (REPO / ".ci" / "run").read_text()
    assert commands[1] in ci.splitlines()
    assert "set -euo pipefail" in ci


def test_help_is_fast_and_lists_the_commands():
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "etl", "--help"], capture_output=True, text=True, timeout=60)
    elapsed = time.perf_counter() - start
    assert proc.returncode == 0
    for cmd in ("validate", "summary", "query"):
        assert cmd in proc.stdout
    assert elapsed < 5, elapsed  # lazy imports: no pandas/torch at start-up
    proc = subprocess.run([sys.executable, "-c", "import etl.cli, sys; print(sorted(m for m in sys.modules if m in ('pandas','torch','pydicom','pandera')))"],
                          capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "[]"


@pytest.mark.slow
def test_plain_install_finds_the_data_folders(tmp_path):
    """`pip install .` (not editable) ships schemas/, mappings/, manifests/, release/ inside the package."""
    target = tmp_path / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-compile",
         "--target", str(target), str(REPO)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    code = ("import etl, etl.resources as r; from etl.demo import load_demo_definition as d; "
            "print(etl.__file__); print(r.data_path('schemas/clinical_imaging.yaml')); print(r.data_root('release')); "
            "print(d()['_path']); print(d()['_definition'])")
    env = {**os.environ, "PYTHONPATH": str(target)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert all(line.startswith(str(target)) for line in lines), lines
    assert "_data" in lines[1]
    assert (target / "etl" / "py.typed").is_file()  # PEP 561: type checkers use the package's annotations
    assert lines[3].endswith("etl/synth/demo.yaml") and lines[4].endswith("etl/_data/release/v1.yaml")
    assert not (REPO / "release" / "demo.yaml").exists()  # release/ holds release definitions only


def test_shipped_test_data_is_the_published_bytes():
    """tests/data holds unmodified copies of the public spreadsheets; the README beside them gives each
    file's sha256, and the files must still have it (no test may edit them in place)."""
    import hashlib

    data = REPO / "tests" / "data"
    rows = re.findall(r"\| `([^`]+\.xlsx)` \|.*\| `([0-9a-f]{64})` \|", (data / "README.md").read_text())
    assert len(rows) == 3, rows
    for rel, digest in rows:
        assert hashlib.sha256((data / rel).read_bytes()).hexdigest() == digest, rel


def test_no_test_reads_outside_the_repository():
    """The README's test command must pass on a fresh clone with nothing beside it."""
    sibling = "shared"  # the design folder beside the clone; spelled once so this file does not match itself
    pattern = re.compile(rf"\.\./{sibling}|MAMAMIA_{sibling.upper()}|parent / \"{sibling}\"")
    offenders = [p for p in (REPO / "tests").rglob("*.py") if pattern.search(p.read_text())]
    assert offenders == []
