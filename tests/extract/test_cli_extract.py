"""The `mamamia extract` / `mamamia cache` commands, in-process and as real subprocesses (SIGKILL + resume)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from extract_dicomgen import TOKEN, series_of

from etl.extract.cache import Cache
from etl.standins.faults import ALWAYS, Faults
from etl.standins.nbia import NbiaStandin
from etl.standins.synapse import SynapseStandin

MAMAMIA = str(Path(sys.executable).with_name("mamamia"))
FAST = ["--retries", "3", "--backoff", "0.05", "--max-backoff", "0.2", "--timeout", "5"]


def test_extract_tcia_cli_exit_1_lists_each_failed_series(corpus3, tmp_path, cli) -> None:
    root, cases, manifest = corpus3
    bad = {cases[0].series[0], cases[2].series[2]}
    with NbiaStandin(root, Faults(truncate_zip=ALWAYS, targets=frozenset(bad))) as s:
        res = cli("extract", "tcia", "--manifest", manifest, "--cache", tmp_path / "c", "--api-url", s.api_url,
                  "--jobs", "2", *FAST)  # fmt: skip
    assert res.exit_code == 1
    assert "7 series fetched" in res.stdout and "2 failed" in res.stdout
    assert "error: 2 series/cases failed:" in res.stderr
    for uid in bad:
        line = next(ln for ln in res.stderr.splitlines() if uid in ln and ln.startswith("  "))
        assert "corrupt or truncated" in line and "gave up after 4 attempts" in line
    assert cli("cache", "verify", "--cache", tmp_path / "c").exit_code == 0


def test_cache_verify_names_a_corrupted_object(corpus3, tmp_path, cli) -> None:
    root, cases, manifest = corpus3
    with NbiaStandin(root) as s:
        assert cli("extract", "tcia", "-m", manifest, "-c", tmp_path / "c", "--api-url", s.api_url, *FAST).exit_code == 0
    c = Cache(tmp_path / "c")
    sha = c.series_files(cases[1].series[0])[2].sha256
    p = c.object_path(sha)
    p.chmod(0o644)
    data = p.read_bytes()
    p.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
    res = cli("cache", "verify", "--cache", tmp_path / "c")
    assert res.exit_code == 1
    assert f"{sha}: content hashes to" in res.stderr and "1 bad" in res.stdout
    ls = cli("cache", "ls", "--cache", tmp_path / "c", "--format", "csv")
    assert ls.exit_code == 0 and len(ls.stdout.strip().splitlines()) == 1 + 9
    assert cases[1].series[0] in ls.stdout


def test_cache_commands_refuse_a_non_cache(tmp_path, cli) -> None:
    res = cli("cache", "verify", "--cache", tmp_path)
    assert res.exit_code == 2 and "not a download cache" in res.stderr


def test_export_reports_cases_missing_from_cache(corpus3, tmp_path, cli) -> None:
    root, cases, manifest = corpus3
    one = tmp_path / "one.csv"
    one.write_text("\n".join(manifest.read_text().splitlines()[:2]) + "\n")
    with NbiaStandin(root) as s:
        cli("extract", "tcia", "-m", one, "-c", tmp_path / "c", "--api-url", s.api_url, *FAST)
    res = cli("cache", "export", "-c", tmp_path / "c", "-m", manifest, "-o", tmp_path / "out")
    assert res.exit_code == 1
    assert "exported 1 case(s), 9 file(s)" in res.stdout
    assert cases[1].release_id in res.stderr and cases[2].release_id in res.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [cases[0].release_id]


def test_extract_synapse_cli_wrong_token_one_line_error(syn_tree2, tmp_path, cli, monkeypatch) -> None:
    monkeypatch.setenv("SYNAPSE_AUTH_TOKEN", "not-the-token-" + "Qw3")
    with SynapseStandin(syn_tree2, token=TOKEN) as s:
        res = cli("extract", "synapse", "--entity", "syn60868042", "-c", tmp_path / "c", "--endpoint", s.origin,
                  "--synapse-config", tmp_path / "none", *FAST)  # fmt: skip
    assert res.exit_code == 1
    assert res.stderr.strip().splitlines()[-1].startswith("error: Synapse refused the credentials (401)")
    assert "not-the-token-Qw3" not in res.stderr + res.stdout


@pytest.mark.slow
def test_sigkill_midway_then_rerun_does_not_refetch_finished_series(corpus20, tmp_path) -> None:
    root, cases, manifest = corpus20
    cache = tmp_path / "c"
    # pace the zips (0.1 s each) so that the kill lands in the middle of the run
    with NbiaStandin(root, Faults(slow_first_byte=0.1, slow_count=ALWAYS)) as s:
        proc = subprocess.Popen(
            [MAMAMIA, "extract", "tcia", "-m", str(manifest), "-c", str(cache), "--api-url", s.api_url, "--jobs", "1", *FAST],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 30
            while s.zip_fetches() < 8 and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.02)
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.wait(timeout=10)
        assert proc.returncode == -signal.SIGKILL
        time.sleep(0.5)  # let the stand-in finish answering the killed client's last (slow) request
        done_before = {r.series_uid for r in Cache(cache).all_series()}
        fetched_before = {e.query["SeriesInstanceUID"] for e in s.requests("getImage")}
        assert 5 <= len(done_before) < 60 and done_before <= fetched_before
        n_before = len(s.log)
        s.faults.slow_count = 0
        rerun = subprocess.run(
            [MAMAMIA, "extract", "tcia", "-m", str(manifest), "-c", str(cache), "--api-url", s.api_url, "--jobs", "2", *FAST],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert rerun.returncode == 0, rerun.stderr[-2000:]
        second = [e.query["SeriesInstanceUID"] for e in s.log[n_before:] if "getImage" in e.path]
    assert not set(second) & done_before  # finished series were not fetched again
    assert sorted(second) == sorted(set(series_of(cases)) - done_before)
    assert f"{60 - len(done_before)} series fetched" in rerun.stdout and f"{len(done_before)} already cached" in rerun.stdout
    verify = subprocess.run([MAMAMIA, "cache", "verify", "-c", str(cache)], capture_output=True, text=True, timeout=60)
    assert verify.returncode == 0 and "0 bad" in verify.stdout
    assert {r.series_uid for r in Cache(cache).all_series()} == set(series_of(cases))


def test_serve_nbia_subprocess_rehearsal_end_to_end(corpus3, tmp_path) -> None:
    """`mamamia extract serve-nbia` in one process, `mamamia extract tcia` + `cache export` in others."""
    root, cases, manifest = corpus3
    server = subprocess.Popen([MAMAMIA, "extract", "serve-nbia", "--corpus", str(root), "--for", "60", "--idle", "20"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        line = server.stdout.readline()
        assert line.startswith("api-url: http://127.0.0.1:"), line
        api = line.split()[1]
        run = subprocess.run([MAMAMIA, "extract", "tcia", "-m", str(manifest), "-c", str(tmp_path / "c"), "--api-url", api, *FAST],
                             capture_output=True, text=True, timeout=60)  # fmt: skip
        assert run.returncode == 0, run.stderr
        assert "9 series fetched" in run.stdout
        exp = subprocess.run([MAMAMIA, "cache", "export", "-c", str(tmp_path / "c"), "-m", str(manifest), "-o", str(tmp_path / "o")],
                             capture_output=True, text=True, timeout=60)  # fmt: skip
        assert exp.returncode == 0, exp.stderr
        assert len(list((tmp_path / "o").rglob("*.dcm"))) == 27
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=10)
    assert "stopped after" in server.stderr.read()


def test_synapse_export_keep_existing_never_replaces_an_imported_file(syn_tree2, tmp_path, cli, monkeypatch) -> None:
    """A rebuild reruns the expert-mask export when staged masks changed; a mask imported since must survive."""
    monkeypatch.setenv("SYNAPSE_AUTH_TOKEN", TOKEN)
    with SynapseStandin(syn_tree2, token=TOKEN) as s:
        res = cli("extract", "synapse", "--entity", "syn60868042", "-c", tmp_path / "c", "--endpoint", s.origin,
                  "--synapse-config", tmp_path / "none", *FAST)  # fmt: skip
    assert res.exit_code == 0, res.stderr
    out = tmp_path / "staged"
    assert cli("cache", "export", "-c", tmp_path / "c", "--synapse", "syn60868042", "--out", out).exit_code == 0
    files = sorted(p for p in out.rglob("*") if p.is_file())
    assert files
    edited, untouched = files[0], files[-1]
    edited.write_bytes(b"imported by an expert")
    before = untouched.read_bytes()
    res = cli("cache", "export", "-c", tmp_path / "c", "--synapse", "syn60868042", "--out", out, "--keep-existing")
    assert res.exit_code == 0, res.stderr
    assert edited.read_bytes() == b"imported by an expert"
    assert untouched.read_bytes() == before
    assert "kept 1 existing file(s)" in res.stderr and edited.relative_to(out).as_posix() in res.stderr
    assert f"{len(files) - 1} already there" in res.stdout
    # without the flag the download's bytes win again (an explicit refresh)
    assert cli("cache", "export", "-c", tmp_path / "c", "--synapse", "syn60868042", "--out", out).exit_code == 0
    assert edited.read_bytes() != b"imported by an expert"
