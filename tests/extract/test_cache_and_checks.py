"""Cache store/ledger, zip checks, manifest reading and stand-in lifecycle, without the clients."""

from __future__ import annotations

import hashlib
import io
import time
import zipfile
from pathlib import Path

import pytest
import requests
from extract_fixtures import put_bytes

from etl.errors import ExtractError, InputUnreadable
from etl.extract.cache import Cache, SeriesFile, SeriesRecord
from etl.caselist import cases_to_fetch, read_manifest
from etl.extract.retry import PermanentError, RetryPolicy, TransientError, call_with_retry
from etl.extract.zipcheck import check_series_zip, safe_member_name
from etl.standins.faults import ALWAYS, Faults
from etl.standins.nbia import NbiaStandin

DICOM = b"\x00" * 128 + b"DICM" + b"payload"


def test_put_file_verifies_md5_and_deduplicates(tmp_path: Path) -> None:
    c = Cache(tmp_path / "c")
    with c.scratch("x") as d:
        (d / "a").write_bytes(b"hello")
        with pytest.raises(ExtractError, match="md5 mismatch"):
            c.put_file(d / "a", expect_md5="0" * 32, where="file a")
        assert not (d / "a").exists()  # a file that failed its md5 is not kept
        (d / "b").write_bytes(b"hello")
        obj = c.put_file(d / "b", expect_md5=hashlib.md5(b"hello").hexdigest())
        (d / "c").write_bytes(b"hello")
        assert c.put_file(d / "c") == obj
    assert obj.sha256 == hashlib.sha256(b"hello").hexdigest()
    assert c.object_path(obj.sha256).read_bytes() == b"hello"
    assert c.stats()["objects"] == 1 and c.verify(progress=False).ok


def test_verify_flags_missing_and_unrecorded_objects(tmp_path: Path) -> None:
    c = Cache(tmp_path / "c")
    a = put_bytes(c, b"alpha")
    b = put_bytes(c, b"beta")
    rec = SeriesRecord("1.2.3", "Coll", "P1", None, "MR", None, "1", 2, 2, 9, True, "http://x/")
    c.record_series(rec, [SeriesFile("a.dcm", a.sha256, a.md5, a.size), SeriesFile("b.dcm", b.sha256, b.md5, b.size)])
    assert c.series_done("1.2.3") is not None
    c.object_path(b.sha256).unlink()
    # an object renamed into place whose ledger row was never written (killed in between)
    orphan = hashlib.sha256(b"orphan").hexdigest()
    c.object_path(orphan).parent.mkdir(parents=True, exist_ok=True)
    c.object_path(orphan).write_bytes(b"orphan")
    rep = c.verify(progress=False)
    assert rep.bad == [(b.sha256, "missing from objects/")]
    assert rep.unrecorded == [orphan]
    assert c.series_done("1.2.3") is None  # incomplete series counts as not done: it will be redone


def test_record_series_refuses_missing_objects(tmp_path: Path) -> None:
    c = Cache(tmp_path / "c")
    rec = SeriesRecord("9.9", "Coll", "P1", None, "MR", None, "1", 1, 1, 1, False, "http://x/")
    with pytest.raises(ExtractError, match="missing from the store"):
        c.record_series(rec, [SeriesFile("a.dcm", "f" * 64, "0" * 32, 1)])
    assert c.all_series() == []


def test_one_writer_per_cache(tmp_path: Path) -> None:
    c = Cache(tmp_path / "c")
    with c.exclusive("first"), pytest.raises(ExtractError, match="another extraction"):
        with Cache(tmp_path / "c").exclusive("second"):
            pass


@pytest.mark.parametrize("name", ["../x.dcm", "/etc/passwd", "a/../../x", "C:evil.dcm", "a\\..\\x", ".."])
def test_unsafe_zip_names(name: str) -> None:
    assert safe_member_name(name) is None


def test_safe_zip_names() -> None:
    assert safe_member_name("1-01.dcm") == "1-01.dcm"
    assert safe_member_name("sub/./1.dcm") == "sub/1.dcm"


def _zip(tmp_path: Path, entries: dict[str, bytes], md5s: dict[str, str] | None = None) -> Path:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for n, b in entries.items():
            zf.writestr(n, b)
        if md5s is not None:
            zf.writestr("md5hashes.csv", "Filename,MD5Hash\n" + "".join(f"{k},{v}\n" for k, v in md5s.items()))
    p = tmp_path / "s.zip"
    p.write_bytes(buf.getvalue())
    return p


def test_zip_checks(tmp_path: Path) -> None:
    good = {"1.dcm": DICOM, "2.dcm": DICOM + b"2", "LICENSE": b"CC BY 4.0"}
    md5 = {k: hashlib.md5(v).hexdigest() for k, v in good.items() if k.endswith(".dcm")}
    ok = check_series_zip(_zip(tmp_path, good, md5), "S", 2, md5_offered=True)
    assert [m.name for m in ok.members] == ["1.dcm", "2.dcm"] and ok.md5_checked and ok.ignored == ["LICENSE"]
    with pytest.raises(TransientError, match="NBIA ImageCount is 3"):
        check_series_zip(_zip(tmp_path, good, md5), "S", 3, md5_offered=True)
    with pytest.raises(TransientError, match="md5 mismatch for 2.dcm"):
        check_series_zip(_zip(tmp_path, good, {**md5, "2.dcm": "0" * 32}), "S", 2, md5_offered=True)
    with pytest.raises(TransientError, match="sent no md5hashes.csv"):
        check_series_zip(_zip(tmp_path, good), "S", 2, md5_offered=True)
    with pytest.raises(TransientError, match="not a DICOM Part 10 file"):
        check_series_zip(_zip(tmp_path, {"1.dcm": b"plain text"}), "S", 1, md5_offered=False)
    with pytest.raises(PermanentError, match="zip-slip"):
        check_series_zip(_zip(tmp_path, {"../1.dcm": DICOM}), "S", 1, md5_offered=False)
    p = _zip(tmp_path, good, md5)
    p.write_bytes(p.read_bytes()[:-40])
    with pytest.raises(TransientError, match="corrupt or truncated"):
        check_series_zip(p, "S", 2, md5_offered=True)


def test_retry_backoff_and_give_up() -> None:
    waits: list[float] = []
    calls = {"n": 0}

    def flaky() -> str:
        calls["n"] += 1
        if calls["n"] < 3:
            raise TransientError("HTTP 500", "x")
        return "ok"

    policy = RetryPolicy(attempts=5, base_delay=0.5, max_delay=1.5, factor=2, jitter=0)
    assert call_with_retry(flaky, policy, "t", sleep=waits.append) == "ok" and waits == [0.5, 1.0]
    waits.clear()
    with pytest.raises(TransientError, match="gave up after 5 attempts"):
        call_with_retry(lambda: (_ for _ in ()).throw(TransientError("reset", "x")), policy, "t", sleep=waits.append)
    assert waits == [0.5, 1.0, 1.5, 1.5]
    with pytest.raises(PermanentError):  # not retried
        call_with_retry(lambda: (_ for _ in ()).throw(PermanentError("HTTP 404", "x")), policy, "t", sleep=waits.append)
    assert len(waits) == 4


def test_manifest_and_exclusions(tmp_path: Path) -> None:
    m = tmp_path / "m.csv"
    m.write_text("patient_id,dataset,tcia_collection,tcia_patient_id,tcia_series_uid\n"
                 "DUKE_001,DUKE,Duke-Breast-Cancer-MRI,Breast_MRI_001,1.2.3\n"
                 "DUKE_002,DUKE,Duke-Breast-Cancer-MRI,Breast_MRI_002,\n")  # fmt: skip
    ex = tmp_path / "x.csv"
    ex.write_text("patient_id,reason\nDUKE_002,no pre-contrast phase\n")
    keep, skipped = cases_to_fetch(m, ex, shipped_exclusions=False)
    assert [c.patient_id for c in keep] == ["DUKE_001"] and skipped == {"DUKE_002": "no pre-contrast phase"}
    bad = tmp_path / "bad.csv"
    bad.write_text("patient_id,dataset\nDUKE_001,DUKE\n")
    with pytest.raises(InputUnreadable, match="lacks column"):
        read_manifest(bad)
    dup = tmp_path / "dup.csv"
    dup.write_text(m.read_text() + "DUKE_001,DUKE,Duke-Breast-Cancer-MRI,Breast_MRI_001,\n")
    with pytest.raises(InputUnreadable, match="duplicate patient_id DUKE_001"):
        read_manifest(dup)


def test_standin_stops_by_itself_and_logs_requests(corpus3) -> None:
    root, cases, _ = corpus3
    s = NbiaStandin(root, Faults(http500=1), idle_timeout=0.5).start()
    r1 = requests.get(s.api_url + "getCollectionValues", timeout=5)
    r2 = requests.get(s.api_url + "getCollectionValues", timeout=5)
    assert (r1.status_code, r2.status_code) == (500, 200) and r2.json() == [{"Collection": "Synth-Breast-MRI"}]
    assert [e.status for e in s.log] == [500, 200] and s.log[0].fault == "http500"
    t0 = time.monotonic()
    s.wait(5)
    assert not s.running and s.stopped_by_idle and time.monotonic() - t0 < 3
    with pytest.raises(requests.ConnectionError):
        requests.get(s.api_url + "getCollectionValues", timeout=2)
    s.stop()


def test_faults_parse() -> None:
    f = Faults.parse(["http500=3", "slow_first_byte=1.5", "slow_count=always"], ["1.2.3"])
    assert (f.http500, f.slow_first_byte, f.slow_count, f.targets) == (3, 1.5, ALWAYS, frozenset({"1.2.3"}))
    assert f.take("http500", {"9.9"}) is False and f.take("http500", {"1.2.3"}) is True and f.http500 == 2
    with pytest.raises(ValueError, match="unknown fault"):
        Faults.parse(["explode=1"])


def test_standin_drop_mid_body_really_cuts_the_connection(corpus3) -> None:
    root, cases, _ = corpus3
    uid = cases[0].series[0]
    with NbiaStandin(root, Faults(drop_mid_body=1)) as s:
        with pytest.raises(requests.exceptions.ChunkedEncodingError):
            requests.get(s.api_url + "getImage", params={"SeriesInstanceUID": uid}, timeout=5)
        ok = requests.get(s.api_url + "getImage", params={"SeriesInstanceUID": uid}, timeout=5)
        assert zipfile.ZipFile(io.BytesIO(ok.content)).testzip() is None
    assert not s.running
