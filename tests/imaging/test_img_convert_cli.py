"""`mamamia convert` end to end: single case, folder of cases, failures, dry run, resume, dask."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from etl.layout import Layout
from etl.synth.corpus import default_cases, write_corpus

MAMAMIA = str(Path(sys.executable).parent / "mamamia")
SMALL = dict(matrix=(24, 24), n_slices=8)


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory):
    """Six small cases (all vendors, views, layouts) as one folder of cases named by patient id."""
    root = tmp_path_factory.mktemp("corpus")
    cases = [dict(c, **SMALL) for c in default_cases(6)]
    written = write_corpus(root / "tcia", cases, seed=11)
    flat = root / "cases"
    flat.mkdir()
    for pid, case in written.items():
        (flat / pid).symlink_to(case.folder, target_is_directory=True)
    return flat, written


@pytest.fixture(scope="module")
def reference(corpus, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clean in-process run of the whole corpus (what every other run must equal byte for byte)."""
    from etl.cli import run

    out = tmp_path_factory.mktemp("reference")
    assert run(["convert", str(corpus[0]), str(out)]) == 0
    return out


def test_reference_run_outputs(corpus, reference: Path) -> None:
    flat, written = corpus
    layout = Layout.from_definition(reference)
    for pid, case in written.items():
        record = json.loads(layout.imaging_json(pid).read_text())
        assert record["patient_id"] == pid and record["num_phases"] == case.truth.spec.n_phases
        assert len(layout.images(pid)) == case.truth.spec.n_phases
        assert case.mask_path is not None and case.mask_path.exists()
    # nothing PHI-like from the headers reaches the outputs
    for p in reference.rglob("*"):
        if p.is_file():
            if p.suffix in (".json", ".tsv"):  # imaging JSON, inventory.tsv
                blob = p.read_bytes()
            else:  # the NIfTI header (descrip, intent name, aux file) and any extension
                with gzip.open(p) as fh:
                    blob = fh.read(352)
            for needle in (b"SYNTH^PATIENT", b"19600101", b"ACC", b"Synthetic General Hospital"):
                assert needle not in blob, (p, needle)


def test_single_case_and_skip(cli, corpus, tmp_path: Path) -> None:
    flat, written = corpus
    res = cli("convert", flat / "DUKE_002", tmp_path / "out", "--profile", "challenge")
    assert res.exit_code == 0, res.stderr
    assert "DUKE_002: converted, 4 phases" in res.stdout
    layout = Layout.from_definition(tmp_path / "out")
    assert len(layout.images("DUKE_002")) == 4
    again = cli("convert", flat / "DUKE_002", tmp_path / "out")
    assert again.exit_code == 0 and "skipped" in again.stdout


def test_single_case_error_is_one_line(cli, tmp_path: Path) -> None:
    (tmp_path / "case").mkdir()
    (tmp_path / "case" / "x.txt").write_text("not dicom")
    res = cli("convert", tmp_path / "case", tmp_path / "out")
    assert res.exit_code == 1
    assert res.stderr.strip().startswith("error: no DICOM images found") and "Traceback" not in res.stderr
    bad = cli("convert", tmp_path / "case", tmp_path / "out", "--profile", "nope")
    assert bad.exit_code == 2 and "unknown profile" in bad.stderr  # usage


def test_failed_case_reported_others_continue(cli, corpus, tmp_path: Path) -> None:
    flat, written = corpus
    cases = tmp_path / "cases"
    cases.mkdir()
    for pid in ("DUKE_001", "ISPY1_1001"):
        (cases / pid).symlink_to(written[pid].folder, target_is_directory=True)
    broken = cases / "NACT_99"
    broken.mkdir()
    victim = written["NACT_01"].truth.files[3]
    (broken / victim.name).write_bytes(victim.read_bytes()[:-200])
    res = cli("convert", cases, tmp_path / "out", "--jobs", "2")
    assert res.exit_code == 1
    assert "failed NACT_99: truncated file" in res.stderr
    assert "2 converted, 0 already done, 1 failed" in res.stdout
    layout = Layout.from_definition(tmp_path / "out")
    assert layout.imaging_json("DUKE_001").exists() and layout.imaging_json("ISPY1_1001").exists()
    assert not layout.imaging_json("NACT_99").exists()


def test_dry_run_writes_nothing(cli, corpus, tmp_path: Path) -> None:
    flat, _ = corpus
    res = cli("convert", flat, tmp_path / "out", "--dry-run")
    assert res.exit_code == 0, res.stderr
    assert "ISPY1_1001: 3 phases, sagittal -> RAS (mama-mia-v1)" in res.stdout
    assert "would write" in res.stdout and "phase 2:" in res.stdout
    assert not (tmp_path / "out").exists()


def test_partial_case_resumes_identically(cli, corpus, reference: Path, tmp_path: Path) -> None:
    """A case with some phases written but no imaging JSON (killed mid-case) is redone; done cases skipped."""
    import shutil

    flat, _ = corpus
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    layout = Layout.from_definition(out)
    layout.imaging_json("DUKE_001").unlink()
    layout.image("DUKE_001", 3).unlink()
    layout.image("DUKE_001", 1).write_bytes(b"garbage from an older run")
    (layout.image("DUKE_001", 0).parent / ".duke_001_0002.nii.gz.abc.tmp").write_bytes(b"half")
    res = cli("convert", flat, out)
    assert res.exit_code == 0
    assert "1 converted, 5 already done, 0 failed" in res.stdout
    (layout.image("DUKE_001", 0).parent / ".duke_001_0002.nii.gz.abc.tmp").unlink()
    assert tree_digest(out) == tree_digest(reference)


@pytest.mark.slow
def test_sigkill_then_resume(corpus, reference: Path, tmp_path: Path) -> None:
    """A real `mamamia convert` process killed mid-run resumes to the same bytes as a clean run."""
    flat, _ = corpus
    out = tmp_path / "out"
    proc = subprocess.Popen([MAMAMIA, "convert", str(flat), str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 60
    marker_dir = out / "imaging"
    while time.monotonic() < deadline and proc.poll() is None:
        if marker_dir.exists() and any(marker_dir.glob("*.json")):
            break
        time.sleep(0.005)
    killed = proc.poll() is None
    if killed:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    done_before = len(list(marker_dir.glob("*.json"))) if marker_dir.exists() else 0
    res = subprocess.run([MAMAMIA, "convert", str(flat), str(out)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert f"{6 - done_before} converted, {done_before} already done" in res.stdout  # finished cases skipped
    leftovers = [p for p in out.rglob(".*.tmp")]
    for p in leftovers:  # a temp file the kill left behind is never mistaken for an output
        p.unlink()
    assert tree_digest(out) == tree_digest(reference)


@pytest.mark.slow
def test_dask_cluster_byte_identical(corpus, reference: Path, tmp_path: Path) -> None:
    from distributed import LocalCluster

    flat, _ = corpus
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster:
        from etl.cli import run

        code = run(["convert", str(flat), str(tmp_path / "out"), "--scheduler", cluster.scheduler_address])
    assert code == 0
    assert tree_digest(tmp_path / "out") == tree_digest(reference)


def test_case_with_named_series_folders_is_one_case(cli, tmp_path: Path) -> None:
    """Series folders named by description (not UID) but of one study: still a single case."""
    from etl.synth.dicom import StudySpec, write_study

    truth = write_study(tmp_path / "PAT_7", StudySpec(matrix=(16, 16), n_slices=4, n_phases=3), seed=4)
    for i, uid in enumerate(truth.series_uids):
        (tmp_path / "PAT_7" / uid).rename(tmp_path / "PAT_7" / f"ax dyn {i}")
    res = cli("convert", tmp_path / "PAT_7", tmp_path / "out")
    assert res.exit_code == 0 and "PAT_7: converted, 3 phases" in res.stdout


def test_folder_of_cases_skips_excluded_patients(cli, corpus, tmp_path: Path) -> None:
    flat, written = corpus
    first, *rest = sorted(written)
    excl = tmp_path / "exclusions.csv"
    excl.write_text(f"patient_id,reason\n{first},image quality\n")
    out = tmp_path / "out"
    res = cli("convert", flat, out, "--exclusions", excl, "--jobs", "1")
    assert res.exit_code == 0, res.stderr
    assert f"{len(rest)} converted" in res.stdout
    assert sorted(p.name for p in (out / "images").iterdir()) == rest
    assert f"skipping {first}: excluded (image quality)" in res.stderr


def test_cases_sharing_an_anonymized_patient_id_stay_separate(tmp_path: Path) -> None:
    """Anonymized corpora often carry one constant PatientID: each folder is still its own case; several
    studies count as one patient only in that patient's folder (TCIA <PatientID>/<study>/<series>)."""
    from etl.commands.convert import plan
    from etl.synth.dicom import StudySpec, write_study

    root = tmp_path / "cases"
    for i, pid in enumerate(["CASE_A", "CASE_B", "CASE_C"]):
        write_study(root / pid, StudySpec(patient_id=pid, tcia_patient_id="ANONYMIZED", n_slices=4, matrix=(8, 8),
                                          extra_non_dicom=False), seed=i)
    jobs = plan(root, tmp_path / "out", "mama-mia-v1", None)
    assert [(j.patient_id, Path(j.source).name) for j in jobs] == [(p, p) for p in ["CASE_A", "CASE_B", "CASE_C"]]
    same = tmp_path / "ANONYMIZED"  # the same three studies under the patient's own folder: one case
    root.rename(same)
    assert [j.patient_id for j in plan(same, tmp_path / "out", "mama-mia-v1", None)] == ["ANONYMIZED"]
