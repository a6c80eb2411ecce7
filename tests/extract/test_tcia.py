"""TCIA extraction: the real tcia_utils client against the NBIA stand-in, with every fault knob."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pydicom
import pytest
from extract_dicomgen import series_of

from etl.extract.cache import Cache
from etl.extract.nbia_client import DEFAULT_API_URL
from etl.extract.tcia import extract_tcia
from etl.standins.faults import ALWAYS, Faults
from etl.standins.nbia import NbiaStandin


def run(standin: NbiaStandin, manifest: Path, cache: Path, policy, **kw):  # type: ignore[no-untyped-def]
    return extract_tcia(manifest, cache, api_url=standin.api_url, policy=policy, shipped_exclusions=False, **kw)


def assert_clean(cache: Path, expect_series: set[str]) -> None:
    """Cache verifies, and holds exactly the expected series, each complete."""
    c = Cache(cache, create=False)
    rep = c.verify(progress=False)
    assert rep.ok, rep.bad
    assert rep.unrecorded == []
    assert {s.series_uid for s in c.all_series()} == expect_series
    for uid in expect_series:
        rec = c.series_done(uid)
        assert rec is not None and rec.n_files == rec.image_count == len(c.series_files(uid))


def test_default_api_url_is_what_tcia_utils_itself_uses() -> None:
    from tcia_utils import nbia

    from etl.commands.extract import NBIA_DEFAULT

    assert nbia.setApiUrl("getSeries", "nbia") == DEFAULT_API_URL == NBIA_DEFAULT


def test_clean_download_stores_the_exact_dicom_bytes(corpus3, tmp_path, fast) -> None:
    root, cases, manifest = corpus3
    with NbiaStandin(root) as s:
        res = run(s, manifest, tmp_path / "c", fast, jobs=2)
    assert res.ok and res.count("fetched") == 9
    # the client really did the HTTP: one lookup per case and one MD5 zip per series
    assert len(s.requests("getSeries")) == 3
    assert s.zip_fetches() == 9 and all(e.path.endswith("getImageWithMD5Hash") for e in s.requests("getImage"))
    c = Cache(tmp_path / "c")
    for case in cases:
        for uid in case.series:
            files = c.series_files(uid)
            src = sorted((root / case.collection / case.patient / uid).glob("*.dcm"))
            assert sorted(f.sha256 for f in files) == sorted(hashlib.sha256(p.read_bytes()).hexdigest() for p in src)
            rec = c.series_done(uid)
            assert rec.md5_checked and rec.patient_id == case.patient and rec.modality == "MR"
    assert_clean(tmp_path / "c", set(series_of(cases)))


def test_rerun_fetches_nothing_again(corpus3, tmp_path, fast) -> None:
    root, cases, manifest = corpus3
    with NbiaStandin(root) as s:
        run(s, manifest, tmp_path / "c", fast)
        n = s.zip_fetches()
        res = run(s, manifest, tmp_path / "c", fast)
    assert n == 9 and s.zip_fetches() == 9
    assert res.count("cached") == 9 and res.count("fetched") == 0


@pytest.mark.parametrize(
    ("knob", "fired", "fetches"),
    [
        (dict(http500=2), 2, 3),
        (dict(drop_mid_body=1), 1, 2),
        (dict(truncate_zip=1), 1, 2),
        (dict(wrong_md5=1), 1, 2),
        (dict(slow_first_byte=1.0, slow_count=1), 1, 2),  # client timeout 0.5 s < 1 s: abandoned, retried
    ],
    ids=["http500", "drop_mid_body", "truncate_zip", "wrong_md5", "slow_first_byte"],
)
def test_transient_fault_on_one_series_is_retried(knob, fired, fetches, corpus3, tmp_path, fast) -> None:
    import dataclasses

    root, cases, manifest = corpus3
    target = cases[1].series[2]
    faults = Faults(targets=frozenset({target}), **knob)
    with NbiaStandin(root, faults) as s:
        res = run(s, manifest, tmp_path / "c", dataclasses.replace(fast, timeout=0.5), jobs=2)
    assert res.ok, res.failure_lines()
    assert faults.fired == {next(iter(knob)): fired}
    assert s.zip_fetches(target) == fetches
    o = next(o for o in res.outcomes if o.series_uid == target)
    assert o.status == "fetched" and o.attempts == fetches
    assert_clean(tmp_path / "c", set(series_of(cases)))


@pytest.mark.parametrize(
    ("knob", "message"),
    [
        (dict(http500=ALWAYS), "HTTP 500"),
        (dict(drop_mid_body=ALWAYS), "connection failed"),
        (dict(truncate_zip=ALWAYS), "corrupt or truncated"),
        (dict(wrong_md5=ALWAYS), "md5 mismatch"),
        (dict(zip_slip=1), "unsafe zip entry name '../"),
    ],
    ids=["http500", "drop_mid_body", "truncate_zip", "wrong_md5", "zip_slip"],
)
def test_persistent_fault_fails_that_series_only_and_names_it(knob, message, corpus3, tmp_path, fast) -> None:
    root, cases, manifest = corpus3
    target = cases[0].series[1]
    with NbiaStandin(root, Faults(targets=frozenset({target}), **knob)) as s:
        res = run(s, manifest, tmp_path / "c", fast, jobs=2)
    assert not res.ok
    [failed] = res.failed
    assert failed.series_uid == target and failed.patient_id == cases[0].release_id
    assert message in failed.reason
    line = res.failure_lines()[0]
    assert target in line and cases[0].release_id in line
    if "zip_slip" in knob:  # refused at once: no retries of a malicious archive, nothing escaped the cache
        assert s.zip_fetches(target) == 1
        assert not list(tmp_path.rglob("*escaped*"))
    else:
        assert s.zip_fetches(target) == fast.attempts
    assert_clean(tmp_path / "c", set(series_of(cases)) - {target})


def test_image_count_mismatch_is_reported(corpus3, tmp_path, fast) -> None:
    root, cases, manifest = corpus3
    target = cases[2].series[0]
    with NbiaStandin(root) as s:
        s.series[target].meta["ImageCount"] = 4  # NBIA says 4, the zip holds 3
        res = run(s, manifest, tmp_path / "c", fast)
    [failed] = res.failed
    assert failed.series_uid == target and "3 DICOM files, NBIA ImageCount is 4" in failed.reason
    assert_clean(tmp_path / "c", set(series_of(cases)) - {target})


def test_partial_series_is_redone(corpus3, tmp_path, fast) -> None:
    """A series whose ledger row exists but one object vanished counts as not done and is fetched again."""
    root, cases, manifest = corpus3
    with NbiaStandin(root) as s:
        run(s, manifest, tmp_path / "c", fast)
        c = Cache(tmp_path / "c")
        target = cases[0].series[0]
        victim = c.object_path(c.series_files(target)[0].sha256)
        victim.chmod(0o644)
        victim.unlink()
        res = run(s, manifest, tmp_path / "c", fast)
    assert [o.series_uid for o in res.outcomes if o.status == "fetched"] == [target]
    assert s.zip_fetches(target) == 2
    assert_clean(tmp_path / "c", set(series_of(cases)))


def test_series_only_exclusions_and_plain_getimage(corpus3, tmp_path, fast) -> None:
    root, cases, manifest = corpus3
    excl = tmp_path / "excl.csv"
    excl.write_text(f"patient_id,reason\n{cases[2].release_id},no DCE series\n")
    with NbiaStandin(root) as s:
        res = run(s, manifest, tmp_path / "c", fast, series_only=True, exclusions=excl, md5=False)
    assert res.ok and res.excluded == {cases[2].release_id: "no DCE series"}
    want = {cases[0].series[1], cases[1].series[1]}  # the manifest's tcia_series_uid column
    assert {o.series_uid for o in res.outcomes} == want
    assert all(e.path.endswith("/getImage") and e.query.get("NewFileNames") == "Yes" for e in s.requests("getImage"))
    c = Cache(tmp_path / "c")
    assert all(not c.series_done(u).md5_checked for u in want)
    assert sorted(f.name for f in c.series_files(cases[0].series[1])) == ["1-01.dcm", "1-02.dcm", "1-03.dcm"]
    assert_clean(tmp_path / "c", want)


def test_unknown_patient_is_a_lookup_failure(corpus3, tmp_path, fast) -> None:
    root, cases, manifest = corpus3
    bad = tmp_path / "m.csv"
    bad.write_text(manifest.read_text() + "GHOST_001,GHOST,Synth-Breast-MRI,Breast_MRI_999,\n")
    with NbiaStandin(root) as s:
        res = run(s, bad, tmp_path / "c", fast)
    assert res.lookup_failures == [("GHOST_001", "NBIA lists no MR series for patient Breast_MRI_999 in Synth-Breast-MRI")]
    assert res.count("fetched") == 9


def test_export_layout_feeds_convert(corpus3, tmp_path, fast) -> None:
    from etl.extract.export import export_tcia

    root, cases, manifest = corpus3
    with NbiaStandin(root) as s:
        run(s, manifest, tmp_path / "c", fast)
    res = export_tcia(tmp_path / "c", manifest, tmp_path / "out", shipped_exclusions=False)
    assert res.ok and res.files == 27 and set(res.cases) == {c.release_id for c in cases}
    case = cases[1]
    for uid in case.series:
        files = sorted((tmp_path / "out" / case.release_id / uid).glob("*.dcm"))
        assert len(files) == 3
        ds = pydicom.dcmread(files[0])
        assert ds.SeriesInstanceUID == uid and ds.PatientID == case.patient
    # exporting again replaces case folders atomically and gives the same bytes
    again = export_tcia(tmp_path / "c", manifest, tmp_path / "out", shipped_exclusions=False, link=True)
    assert again.files == 27 and not list((tmp_path / "out").glob("*.partial"))


@pytest.mark.slow
def test_twenty_cases_with_every_fault_on_end_verified(corpus20, tmp_path, fast) -> None:
    root, cases, manifest = corpus20
    faults = Faults(http500=3, drop_mid_body=2, truncate_zip=2, wrong_md5=2, slow_first_byte=2.5, slow_count=1)
    with NbiaStandin(root, faults) as s:
        res = run(s, manifest, tmp_path / "c", fast, jobs=4)
    assert res.ok, res.failure_lines()
    assert res.count("fetched") == 60
    assert faults.fired == {"http500": 3, "drop_mid_body": 2, "truncate_zip": 2, "wrong_md5": 2, "slow_first_byte": 1}
    assert_clean(tmp_path / "c", set(series_of(cases)))


def test_mirror_without_md5_endpoint_falls_back_to_getimage(corpus3, tmp_path, fast) -> None:
    root, cases, manifest = corpus3
    with NbiaStandin(root, md5_endpoint=False) as s:
        res = run(s, manifest, tmp_path / "c", fast)
    assert res.ok and res.count("fetched") == 9
    assert [e.status for e in s.requests("getImageWithMD5Hash")] == [404] * 9
    assert len([e for e in s.requests("getImage") if e.path.endswith("/getImage")]) == 9
    c = Cache(tmp_path / "c")
    assert not any(r.md5_checked for r in c.all_series())
    assert_clean(tmp_path / "c", set(series_of(cases)))


def test_each_series_reports_its_bytes_as_they_arrive(corpus3, tmp_path, fast, monkeypatch) -> None:
    """The per-series progress bar: tcia_utils reads each zip whole, so the transport streams the body and
    reports (bytes so far, Content-Length) per series; the last report is the whole zip."""
    from etl.extract.progress_view import RunProgress

    seen: dict[str, list[tuple[int, int | None]]] = {}
    monkeypatch.setattr(RunProgress, "bytes_of", lambda self, key, got, total: seen.setdefault(key, []).append((got, total)))
    root, cases, manifest = corpus3
    with NbiaStandin(root) as s:
        res = run(s, manifest, tmp_path / "c", fast)
    assert not res.failed
    assert set(seen) == set(series_of(cases))
    for uid, reports in seen.items():
        got, total = reports[-1]
        assert reports[0][0] == 0 and total is not None and got == total > 1000, (uid, reports)
        assert [g for g, _ in reports] == sorted(g for g, _ in reports)
