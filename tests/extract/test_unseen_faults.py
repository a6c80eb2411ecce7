"""Faults beyond the issue's list: each is recovered or fails naming the series/file, cache verified-clean.

The real clients (tcia_utils, synapseclient) against the stand-ins with the extra fault knobs: 200 with an
HTML page, malformed JSON, 429/503 with Retry-After, 503 forever (bounded by the breaker), empty zip,
duplicate entries, extra non-DICOM entries, a wrapping folder, a missing md5, a file entity as root, and a
cache that is corrupt, read-only or not a directory.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from extract_dicomgen import TOKEN, series_of
from test_tcia import assert_clean, run

from etl.extract.cache import Cache
from etl.extract.synapse import extract_synapse
from etl.standins.faults import ALWAYS, Faults
from etl.standins.nbia import NbiaStandin
from etl.standins.synapse import SynapseStandin

MAMAMIA = str(Path(sys.executable).with_name("mamamia"))


# ---------------------------------------------------------------------- NBIA answers that are not what they say
@pytest.mark.parametrize("knob", ["html_200", "bad_json"])
def test_getseries_200_that_is_not_json_is_retried_then_named(knob, corpus3, tmp_path, fast) -> None:
    root, cases, manifest = corpus3
    with NbiaStandin(root, Faults(**{knob: 1})) as s:
        res = run(s, manifest, tmp_path / "once", fast)
    assert res.ok, res.failure_lines()
    assert s.faults.fired == {knob: 1} and res.count("fetched") == 9
    target = cases[0].patient  # always: the case fails with the real reason, not "NBIA lists no series"
    with NbiaStandin(root, Faults(**{knob: ALWAYS}, targets=frozenset({target}))) as s:
        res = run(s, manifest, tmp_path / "always", fast)
    [(pid, why)] = res.lookup_failures
    assert pid == cases[0].release_id and "not valid JSON" in why and "lists no" not in why
    assert len(s.requests("getSeries", PatientID=target)) == fast.attempts
    assert_clean(tmp_path / "always", set(series_of(cases[1:])))


def test_html_page_instead_of_a_zip_is_named_and_retried(corpus3, tmp_path, fast) -> None:
    root, cases, manifest = corpus3
    good, bad = cases[1].series[0], cases[2].series[1]
    faults = Faults(html_200=ALWAYS, targets=frozenset({bad}))
    with NbiaStandin(root, faults) as s:
        s.faults.html_200 = 1
        s.faults.targets = frozenset({good})
        res = run(s, manifest, tmp_path / "c", fast)
        assert res.ok and s.zip_fetches(good) == 2
        s.faults.html_200, s.faults.targets = ALWAYS, frozenset({bad})
        shutil.rmtree(tmp_path / "c")
        res = run(s, manifest, tmp_path / "c", fast)
    [failed] = res.failed
    assert failed.series_uid == bad and "HTML/XML page titled 'Service Unavailable'" in failed.reason
    assert_clean(tmp_path / "c", set(series_of(cases)) - {bad})


def test_429_and_503_retry_after_is_honoured(corpus3, tmp_path, fast) -> None:
    root, cases, manifest = corpus3
    target = cases[0].series[0]
    for knob in ("http429", "http503"):
        faults = Faults(**{knob: 1}, retry_after=0.6, targets=frozenset({target}))
        with NbiaStandin(root, faults) as s:
            res = run(s, manifest, tmp_path / knob, fast, jobs=1)
        assert res.ok and faults.fired == {knob: 1}
        first, second = (e.t for e in s.requests("getImage", SeriesInstanceUID=target))
        assert 0.55 <= second - first < 1.5, (knob, second - first)  # fast backoff alone would be 0.05 s
        assert_clean(tmp_path / knob, set(series_of(cases)))


def test_503_forever_gives_up_in_bounded_time_naming_everything(corpus3, tmp_path, fast) -> None:
    root, cases, manifest = corpus3
    uids = set(series_of(cases))
    faults = Faults(http503=ALWAYS, targets=frozenset(uids))  # lookups work, every zip download is 503
    t0 = time.monotonic()
    with NbiaStandin(root, faults) as s:
        res = run(s, manifest, tmp_path / "c", fast, jobs=1)
    took = time.monotonic() - t0
    assert res.gave_up and "3 operations in a row failed (HTTP 503" in res.gave_up
    assert len(res.failed) == 9 and {o.series_uid for o in res.failed} == uids
    assert s.zip_fetches() == 3 * fast.attempts  # the 6 series after the breaker tripped were never requested
    skipped = [o for o in res.failed if o.skipped]
    assert len(skipped) == 6 and all("gave up on the rest of the run" in o.reason for o in skipped)
    assert took < 5
    assert_clean(tmp_path / "c", set())


def test_503_forever_cli_says_why_it_stopped(corpus3, tmp_path, cli) -> None:
    root, cases, manifest = corpus3
    with NbiaStandin(root, Faults(http503=ALWAYS)) as s:
        r = cli("extract", "tcia", "--manifest", manifest, "--cache", tmp_path / "c", "--api-url", s.api_url,
                "--retries", "1", "--backoff", "0.01", "--timeout", "2", "--jobs", "1")  # fmt: skip
    assert r.exit_code == 1
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error: ")]
    assert errors[0].startswith("error: NBIA at ") and "unavailable: 3 operations in a row failed" in errors[0]
    assert errors[1] == "error: 3 series/cases failed:"
    assert "Traceback" not in r.stderr and all(c.release_id in r.stderr for c in cases)


# ---------------------------------------------------------------------- zip shapes
def test_empty_zip_and_duplicate_entries_fail_named(corpus3, tmp_path, fast) -> None:
    root, cases, manifest = corpus3
    empty, dup = cases[0].series[0], cases[1].series[0]
    with NbiaStandin(root, Faults(empty_zip=ALWAYS, targets=frozenset({empty}))) as s:
        res = run(s, manifest, tmp_path / "c", fast)
        s.faults.empty_zip, s.faults.duplicate_entry, s.faults.targets = 0, ALWAYS, frozenset({dup})
        res2 = run(s, manifest, tmp_path / "c2", fast)
    [f1] = res.failed
    assert f1.series_uid == empty and "zip holds no DICOM files (empty archive)" in f1.reason
    assert s.zip_fetches(empty) == fast.attempts + 1  # retried; fetched fine in the second run
    [f2] = res2.failed
    assert f2.series_uid == dup and "entries named" in f2.reason and "archive rejected" in f2.reason
    assert s.zip_fetches(dup) == 2  # fine in run 1; in run 2 refused at once (no retry), like zip-slip
    assert res2.count("fetched") == 8
    assert_clean(tmp_path / "c", set(series_of(cases)) - {empty})
    assert_clean(tmp_path / "c2", set(series_of(cases)) - {dup})


def test_extra_files_and_a_wrapping_folder_are_harmless(corpus3, tmp_path, fast) -> None:
    root, cases, manifest = corpus3
    with NbiaStandin(root) as s:
        run(s, manifest, tmp_path / "clean", fast)
    with NbiaStandin(root, Faults(extra_entries=ALWAYS, nested_folder=ALWAYS)) as s:
        res = run(s, manifest, tmp_path / "odd", fast)
    assert res.ok and s.faults.fired == {"extra_entries": 9, "nested_folder": 9}
    a, b = Cache(tmp_path / "clean"), Cache(tmp_path / "odd")
    for uid in series_of(cases):  # same names, same bytes, md5 still checked; LICENSE/readme not stored
        assert b.series_files(uid) == a.series_files(uid) and b.series_done(uid).md5_checked
    assert_clean(tmp_path / "odd", set(series_of(cases)))


def test_unknown_collection_is_named(corpus3, tmp_path, fast) -> None:
    root, cases, manifest = corpus3
    bad = tmp_path / "m.csv"
    bad.write_text(manifest.read_text() + "GHOST_001,GHOST,No-Such-Collection,Breast_MRI_001,\n")
    with NbiaStandin(root) as s:
        res = run(s, bad, tmp_path / "c", fast)
    assert res.lookup_failures == [("GHOST_001", "NBIA lists no MR series for patient Breast_MRI_001 in "
                                    "No-Such-Collection (NBIA has no collection named 'No-Such-Collection')")]  # fmt: skip
    assert res.count("fetched") == 9


# ---------------------------------------------------------------------- the cache itself
def test_corrupt_ledger_and_non_directory_cache_are_one_line_errors(corpus3, tmp_path, cli) -> None:
    root, cases, manifest = corpus3
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "ledger.sqlite").write_bytes(b"this is not sqlite" * 100)
    (tmp_path / "f").write_text("x")
    with NbiaStandin(root) as s:
        for args in (("cache", "ls", "--cache", tmp_path / "c"), ("cache", "verify", "--cache", tmp_path / "c"),
                     ("extract", "tcia", "--manifest", manifest, "--cache", tmp_path / "c", "--api-url", s.api_url),
                     ("extract", "tcia", "--manifest", manifest, "--cache", tmp_path / "f", "--api-url", s.api_url)):  # fmt: skip
            r = cli(*args)
            assert r.exit_code == 2, (args, r.stderr)
            [line] = r.stderr.strip().splitlines()
            assert line.startswith("error: ") and ("ledger is unreadable" in line or "cache directory" in line), line
        assert s.zip_fetches() == 0


def test_damaged_ledger_pages_are_reported_not_a_traceback(corpus3, tmp_path, fast, cli) -> None:
    root, cases, manifest = corpus3
    with NbiaStandin(root) as s:
        run(s, manifest, tmp_path / "c", fast)
    db = sqlite3.connect(tmp_path / "c" / "ledger.sqlite")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    ledger = tmp_path / "c" / "ledger.sqlite"
    data = bytearray(ledger.read_bytes())
    page = 4096
    assert len(data) >= 3 * page
    data[page + 100 : 3 * page] = b"\xff" * (2 * page - 100)  # b-tree pages overwritten
    ledger.write_bytes(bytes(data))
    r = cli("cache", "verify", "--cache", tmp_path / "c")
    assert r.exit_code in (1, 2) and "Traceback" not in r.stderr
    assert "ledger" in r.stderr.splitlines()[0] or "ledger.sqlite" in r.stderr


def _as_nobody() -> list[str] | None:
    if os.geteuid() != 0:
        return []
    return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if shutil.which("setpriv") else None


def test_read_only_cache_can_be_listed_and_verified_but_not_extracted_into(corpus3, tmp_path, fast) -> None:
    prefix = _as_nobody()
    if prefix is None:
        pytest.skip("running as root without setpriv: cannot make a directory read-only")
    root, cases, manifest = corpus3
    import tempfile

    tmp_path = Path(tempfile.mkdtemp(prefix="ro-cache.", dir="/tmp"))  # pytest's own tmp is not enterable by nobody
    shutil.copy(manifest, tmp_path / "manifest.csv")
    manifest = tmp_path / "manifest.csv"
    with NbiaStandin(root) as s:
        run(s, manifest, tmp_path / "c", fast)
    Cache(tmp_path / "c").close()
    for p in [tmp_path, *tmp_path.rglob("*")]:
        p.chmod(0o555 if p.is_dir() else 0o444)
    try:
        env = {**os.environ, "HOME": str(tmp_path)}

        def mm(*args: object) -> subprocess.CompletedProcess[str]:
            return subprocess.run([*prefix, MAMAMIA, *map(str, args)], capture_output=True, text=True, timeout=60,
                                  env=env)  # fmt: skip

        r = mm("cache", "verify", "--cache", tmp_path / "c")
        assert r.returncode == 0, r.stderr
        assert "27 object(s)" in r.stdout
        assert mm("cache", "ls", "--cache", tmp_path / "c").returncode == 0
        with NbiaStandin(root) as s:
            r = mm("extract", "tcia", "--manifest", manifest, "--cache", tmp_path / "c", "--api-url", s.api_url)
        assert r.returncode == 2 and "Traceback" not in r.stderr
        assert r.stderr.strip() == f"error: the cache directory is not writable ({tmp_path / 'c'})"
        assert s.zip_fetches() == 0
    finally:
        for p in [tmp_path, *tmp_path.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)
        shutil.rmtree(tmp_path, ignore_errors=True)


# ---------------------------------------------------------------------- Synapse
ROOT = "syn60868042"


def srun(s: SynapseStandin, cache: Path, policy, config: str, entity: str = ROOT, **kw):  # type: ignore[no-untyped-def]
    return extract_synapse(entity, cache, endpoint=s.origin, policy=policy, config_path=config, **kw)


def test_synapse_missing_md5_is_refused_and_nothing_kept(syn_tree2, tmp_path, fast, no_user_synapse_config) -> None:
    target = "train_test_splits.csv"
    with SynapseStandin(syn_tree2, token=TOKEN, faults=Faults(missing_md5=ALWAYS)) as s:
        s.faults.targets = frozenset({target, s.id_of(target)})
        res = srun(s, tmp_path / "c", fast, no_user_synapse_config)
        syn_id = s.id_of(target)
    [failed] = res.failed
    assert failed.syn_id == syn_id and failed.relpath == target and "no md5" in failed.reason
    assert s.file_fetches(syn_id) == 0
    c = Cache(tmp_path / "c")
    assert target not in {r.relpath for r in c.synapse_files()} and c.verify(progress=False).ok


def test_synapse_html_page_with_200_is_retried(syn_tree2, tmp_path, fast, no_user_synapse_config) -> None:
    target = "clinical_and_imaging_info.xlsx"
    with SynapseStandin(syn_tree2, token=TOKEN, faults=Faults(html_200=2)) as s:
        s.faults.targets = frozenset({target, s.id_of(target)})
        res = srun(s, tmp_path / "c", fast, no_user_synapse_config)
    assert res.ok, res.failure_lines()
    assert s.faults.fired == {"html_200": 2}
    assert Cache(tmp_path / "c").verify(progress=False).ok and res.count("fetched") == 8


def test_synapse_503_forever_is_bounded_and_one_line(syn_tree2, tmp_path, cli, monkeypatch) -> None:
    monkeypatch.setenv("SYNAPSE_AUTH_TOKEN", TOKEN)
    with SynapseStandin(syn_tree2, token=TOKEN, faults=Faults(http503=ALWAYS, retry_after=0.1)) as s:
        t0 = time.monotonic()
        r = cli("extract", "synapse", "--entity", ROOT, "--cache", tmp_path / "c", "--endpoint", s.origin,
                "--synapse-config", tmp_path / "none", "--retries", "2", "--backoff", "0.05", "--max-backoff", "0.1",
                "--timeout", "2")  # fmt: skip
        took = time.monotonic() - t0
    assert r.exit_code == 1 and TOKEN not in r.stderr and "Traceback" not in r.stderr
    [line] = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert line.startswith("error: HTTP 503 from Synapse; gave up after 3 attempts (login at http://127.0.0.1:")
    assert len(s.log) <= 3 * 2 and took < 10  # our 3 attempts x at most 2 inside the client


def test_synapse_file_files_503_trip_the_breaker(syn_tree2, tmp_path, fast, no_user_synapse_config) -> None:
    with SynapseStandin(syn_tree2, token=TOKEN, faults=Faults(http503=ALWAYS)) as s:
        s.faults.targets = frozenset(e.name for e in s.entities.values() if e.kind == "file")  # only file bodies
        res = srun(s, tmp_path / "c", dataclasses.replace(fast, attempts=2), no_user_synapse_config, jobs=1)
    assert res.gave_up and "Synapse at" in res.gave_up and len(res.failed) == 8
    assert sum(o.skipped for o in res.failed) == 5
    assert Cache(tmp_path / "c").verify(progress=False).ok


def test_synapse_entity_that_is_a_file(syn_tree2, tmp_path, fast, no_user_synapse_config) -> None:
    target = "clinical_and_imaging_info.xlsx"
    with SynapseStandin(syn_tree2, token=TOKEN, page_size=1) as s:
        syn_id = s.id_of(target)
        res = srun(s, tmp_path / "c", fast, no_user_synapse_config, entity=syn_id)
        assert not s.requests("/entity/children")
    assert res.ok and [(o.syn_id, o.relpath, o.status) for o in res.outcomes] == [(syn_id, target, "fetched")]
    assert Cache(tmp_path / "c").verify(progress=False).ok


def test_breaker_counts_one_outage_once_however_many_jobs_it_hit() -> None:
    """Failures "in a row" are consecutive in time: jobs that overlap one short blip count once, so a
    run with --jobs 8 is not ended by an outage that a --jobs 1 run would ride out."""
    from etl.extract.retry import Breaker, TransientError

    down = TransientError("HTTP 503", "x", unavailable=True)
    b = Breaker("NBIA", threshold=3)
    starts = [b.check() for _ in range(8)]  # 8 parallel operations start, then all fail in the same blip
    for t in starts:
        b.record(down, t)
    assert b.tripped is None
    b.record(None)  # the service is back
    for _ in range(2):  # two more failures, each started after the previous one ended: still not 3
        b.record(down, b.check())
    assert b.tripped is None
    b.record(down, b.check())  # the third consecutive one trips it
    assert b.tripped and "3 operations in a row failed (HTTP 503)" in b.tripped
    with pytest.raises(Exception, match="gave up on the rest of the run"):
        b.check("series 1.2.3")
