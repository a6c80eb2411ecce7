"""`release build --jobs N`: the case files copied and hashed by a process pool give the one-job release's
bytes; a case that fails in a worker fails the build with its typed one-line error and writes nothing."""

from __future__ import annotations

import json
from pathlib import Path

from tests.release.release_helpers import make_staged


def release_bytes(root: Path) -> dict[str, bytes]:
    """Every file of a release by relative path (SHA256SUMS and provenance.json included)."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def keys(doc: object) -> set[str]:
    if isinstance(doc, dict):
        return set(doc) | {k for v in doc.values() for k in keys(v)}
    if isinstance(doc, list):
        return {k for v in doc for k in keys(v)}
    return set()


def test_two_jobs_give_the_one_job_release_byte_for_byte(staged, release_dir: Path, tmp_path: Path, cli) -> None:
    out = tmp_path / "jobs2" / release_dir.name
    res = cli("release", "build", staged.definition, "--out", out, "--jobs", "2")
    assert res.exit_code == 0, res.stderr + res.stdout
    one, two = release_bytes(release_dir), release_bytes(out)
    assert sorted(two) == sorted(one)
    assert [rel for rel in one if one[rel] != two[rel]] == []
    assert sum(rel.startswith("images/") for rel in one) > len(staged.ids)  # the case files are in the comparison
    # how the build ran is not part of the release (else the bytes would depend on it); the definition's own
    # `rebuild:` section (tcia.jobs, synapse.jobs) is recorded as declared
    prov = json.loads(two["provenance.json"])
    assert not keys({k: v for k, v in prov.items() if k != "definition"}) & {"jobs", "scheduler"}


def test_a_case_failing_in_a_worker_fails_the_build_and_writes_nothing(tmp_path: Path, cli) -> None:
    s = make_staged(tmp_path)
    mask = s.root / "segmentations" / "expert" / "duke_002.nii.gz"
    mask.write_bytes(mask.read_bytes()[: mask.stat().st_size // 2])  # truncated: its voxels cannot be read
    out = tmp_path / "rel"
    res = cli("release", "build", s.definition, "--out", out, "--jobs", "2")
    assert res.exit_code == 2, res.stderr + res.stdout  # InputUnreadable, as in one process
    lines = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("error: case DUKE_002: staged NIfTI unreadable") and lines[0].endswith(f"({mask})")
    assert "Traceback" not in res.stderr
    assert not out.exists() and not out.with_name("rel.partial").exists()
    # the same fault in this process (one job) is the same error
    res1 = cli("release", "build", s.definition, "--out", out)
    assert res1.exit_code == 2 and [line for line in res1.stderr.splitlines() if line.startswith("error:")] == lines
    assert not out.exists() and not out.with_name("rel.partial").exists()
