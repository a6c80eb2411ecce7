"""Session fixtures for the report tests: one small release built with `--report` (the release tests'
staged data: 8 real v1 rows, two per collection, masks on six of them) plus two raters' scores, so every
section of the data card has something to show."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.release.release_helpers import Staged, make_staged

# two raters, five cases in common: kappa on four classes and on good vs needs correction
RATINGS = [
    ("DUKE_001", "alice", "good"), ("DUKE_001", "bob", "good"),
    ("DUKE_002", "alice", "acceptable"), ("DUKE_002", "bob", "good"),
    ("ISPY1_1001", "alice", "poor"), ("ISPY1_1001", "bob", "poor"),
    ("ISPY2_100899", "alice", "good"), ("ISPY2_100899", "bob", "acceptable"),
    ("NACT_01", "alice", "missed"), ("NACT_01", "bob", "poor"),
]


@pytest.fixture(scope="session")
def report_staged(tmp_path_factory: pytest.TempPathFactory) -> Staged:
    staged = make_staged(tmp_path_factory.mktemp("report-staged"))
    lines = ["patient_id,rater,score,comment,rated_at,mask_sha256,app_version"]
    lines += [f"{pid},{rater},{score},,2026-01-0{i % 9 + 1}T10:00:00+00:00,,test" for i, (pid, rater, score) in enumerate(RATINGS)]
    (staged.root / "segmentation_quality.csv").write_text("\n".join(lines) + "\n")
    return staged


@pytest.fixture(scope="session")
def report_release(report_staged: Staged, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A release built by `release build --report` (report.html inside, checksummed)."""
    from etl.release.build import build_release
    from etl.release.definition import load_definition

    out = tmp_path_factory.mktemp("report-rel") / "test-release-0.1.0"
    build_release(load_definition(report_staged.definition), out, report=True)
    return out
