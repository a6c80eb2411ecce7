"""convert, FTV segmentation and the release build through a real dask.distributed cluster give the local
run's bytes.

A `dask scheduler` and a `dask worker --nworkers 2` run as separate processes on 127.0.0.1 (bounded by a
timeout, always stopped; one cluster for the module); `mamamia rebuild --scheduler` sends the per-case work
of convert and segment there, `mamamia release build --scheduler` the copying and hashing of the case files.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import write_rebuild_definition, write_cases

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

DASK = Path(sys.executable).with_name("dask")
CASES = [
    {"patient_id": "DUKE_001", "vendor": "GE", "view": "axial", "layout": "per_phase", "n_phases": 3},
    {"patient_id": "ISPY1_1001", "vendor": "Philips", "view": "sagittal", "layout": "single_series",
     "bilateral": False, "n_phases": 3},
]


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A scheduler and two worker processes on the loopback; yields the scheduler address."""
    tmp_path = tmp_path_factory.mktemp("dask")
    if not DASK.exists():
        pytest.fail(f"the dask command line is not installed next to {sys.executable}")
    info = tmp_path / "scheduler.json"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    procs: list[subprocess.Popen] = []
    logs = [open(tmp_path / name, "w") for name in ("scheduler.log", "worker.log")]
    try:
        procs.append(subprocess.Popen([str(DASK), "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                                       "--scheduler-file", str(info)], stdout=logs[0], stderr=subprocess.STDOUT,
                                      env=env, cwd=tmp_path))
        deadline = time.monotonic() + 60
        while not info.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert info.exists(), (tmp_path / "scheduler.log").read_text()
        address = json.loads(info.read_text())["address"]
        assert address.startswith("tcp://127.0.0.1:")
        procs.append(subprocess.Popen([str(DASK), "worker", address, "--nworkers", "2", "--nthreads", "1",
                                       "--host", "127.0.0.1", "--no-dashboard", "--local-directory",
                                       str(tmp_path / "dask-worker-space")],
                                      stdout=logs[1], stderr=subprocess.STDOUT, env=env, cwd=tmp_path))
        from distributed import Client

        with Client(address, timeout="30s") as client:
            client.wait_for_workers(2, timeout=90)
            assert len(client.scheduler_info()["workers"]) == 2
        yield address
    finally:
        for proc in reversed(procs):
            _stop(proc)
        for fh in logs:
            fh.close()


def _outputs(staged: Path) -> dict[str, bytes]:
    globs = ("images/*/*.nii.gz", "imaging/*.imaging.json", "segmentations/automatic/*.nii.gz")
    return {p.relative_to(staged).as_posix(): p.read_bytes() for g in globs for p in sorted(staged.glob(g))}


def test_convert_and_ftv_on_a_dask_cluster_match_the_local_run_byte_for_byte(dask_cluster, cli, tmp_path):
    written, manifest = write_cases(tmp_path / "inputs", CASES)
    definition = write_rebuild_definition(tmp_path / "inputs" / "rebuild.yaml", manifest, {})
    runs = {}
    for name, extra in (("local", ["--jobs", "1"]), ("dask", ["--scheduler", dask_cluster])):
        work = tmp_path / name
        for pid, case in written.items():  # what `cache export` would have written
            shutil.copytree(case.folder, work / "dicom" / pid)
        for first in ("convert", "segment"):
            res = cli("rebuild", definition, "--work", work, "--from", first, "--until", first, *extra,
                      "--log", work / "rebuild.log")
            assert res.exit_code == 0, res.stderr + res.stdout
        log = (work / "rebuild.log").read_text()
        if name == "dask":
            assert f"mamamia convert {work / 'dicom'} {work / 'staged'}" in log and f"--scheduler {dask_cluster}" in log
            segment = next(line for line in log.splitlines() if line.startswith("$ mamamia segment"))
            assert " --ftv " in segment and segment.endswith(f"--scheduler {dask_cluster}")
        runs[name] = _outputs(work / "staged")
    assert len(runs["local"]) == 2 * 3 + 2 + 2  # 3 phases per case, imaging JSON, automatic mask
    assert sorted(runs["dask"]) == sorted(runs["local"])
    differ = [k for k in runs["local"] if runs["local"][k] != runs["dask"][k]]
    assert not differ, differ


def test_release_build_on_a_dask_cluster_matches_the_local_build_byte_for_byte(dask_cluster, cli, tmp_path):
    from distributed import Client, get_task_stream

    from tests.release.release_helpers import make_staged

    staged = make_staged(tmp_path / "inputs")
    builds = {}
    with Client(dask_cluster, timeout="30s") as client:
        for name, extra in (("local", ["--jobs", "1"]), ("dask", ["--scheduler", dask_cluster])):
            out = tmp_path / name / "release"
            with get_task_stream(client) as stream:
                res = cli("release", "build", staged.definition, "--out", out, *extra)
            assert res.exit_code == 0, res.stderr + res.stdout
            # the dask build ran one task per case on the cluster; the local one none
            assert len(stream.data) == (len(staged.ids) if name == "dask" else 0), stream.data
            builds[name] = {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    assert sum(rel.startswith("images/") for rel in builds["local"]) > len(staged.ids)
    assert sorted(builds["dask"]) == sorted(builds["local"])
    differ = [k for k in builds["local"] if builds["local"][k] != builds["dask"][k]]
    assert not differ, differ
