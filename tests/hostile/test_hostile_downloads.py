"""Zip amplification (honest and lying central directory), a series bigger than NBIA says, an over-long
Synapse body: each is refused by name, nothing of it is stored, and the other series/files go on."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pytest
from extract_dicomgen import TOKEN

from etl.extract.cache import Cache
from etl.extract.limits import Limits
from etl.extract.synapse import extract_synapse
from etl.extract.tcia import extract_tcia
from etl.standins.faults import ALWAYS, Faults
from etl.standins.nbia import NbiaStandin
from etl.standins.synapse import SynapseStandin


def _series(cases) -> list[str]:  # type: ignore[no-untyped-def]
    return [u for c in cases for u in c.series]


def _assert_nothing_of(cache: Path, refused: str, others: set[str], corpus: Path) -> None:
    """The refused series left no ledger row, no object, no temp file; the others are complete."""
    c = Cache(cache, create=False)
    rep = c.verify(progress=False)
    assert rep.ok and rep.unrecorded == [] and rep.stale_tmp == 0, (rep.bad, rep.stale_tmp)
    assert {s.series_uid for s in c.all_series()} == others
    stored = {p.name for p in (cache / "objects").rglob("*") if p.is_file()}
    want = {hashlib.sha256(p.read_bytes()).hexdigest() for uid in others for p in corpus.rglob(f"{uid}/*.dcm")}
    assert stored == want  # exactly the other series' DICOM files: nothing of the refused one
    assert not list((cache / "tmp").iterdir())


@pytest.mark.parametrize(
    ("knobs", "limits", "says"),
    [
        # the central directory is honest: the entry's ratio (~1000:1) is refused before it is read
        (dict(zip_bomb=ALWAYS), {}, r"expands \d+:1 \(\d+ -> 2516\d+ bytes\), above the 100:1 cap for DICOM"),
        # with the cap out of the way, the entries' total still disagrees with NBIA's size for the series
        (dict(zip_bomb=ALWAYS), dict(max_ratio=5000), r"zip entries expand to 2516\d+ bytes, \d+ bytes more than"),
        # the directory states the original size: the read stops one byte past it
        (dict(zip_bomb_lying=ALWAYS), {}, r"holds more than the \d+ bytes the zip directory states \(lying central"),
        # an honest, uncompressed zip bigger than the series: refused from its Content-Length
        (dict(oversize_series=ALWAYS), {}, r"the server announces a \d+-byte zip, more than the \d+ bytes the series"),
        # ... and without a Content-Length, at the first chunk past the limit
        (dict(oversize_series=ALWAYS, no_content_length=ALWAYS), {}, r"the zip body passed \d+ bytes"),
    ],
    ids=["bomb", "bomb-size", "lying-directory", "oversize", "oversize-no-length"],
)
def test_amplified_or_oversize_series_is_refused_by_name_and_nothing_stored(knobs, limits, says, corpus2, tmp_path,
                                                                           fast) -> None:  # fmt: skip
    import re

    root, cases, manifest = corpus2
    bad = cases[0].series[1]
    with NbiaStandin(root, faults=Faults(targets=frozenset({bad}), bomb_mb=24, **knobs)) as s:
        res = extract_tcia(manifest, tmp_path / "c", api_url=s.api_url, policy=fast, shipped_exclusions=False,
                           limits=Limits(**limits))  # fmt: skip
    assert all(s.faults.fired[k] == 1 for k in knobs)  # refused once: a hostile archive is not fetched again
    [failed] = res.failed
    assert failed.series_uid == bad and re.search(says, failed.reason), failed.reason
    assert "nothing stored" in failed.reason or "refused before download" in failed.reason
    assert any(bad in line for line in res.failure_lines())
    others = set(_series(cases)) - {bad}
    assert res.count("fetched") == len(others)
    _assert_nothing_of(tmp_path / "c", bad, others, root)


def test_honest_bomb_is_refused_from_the_directory_alone(corpus2, tmp_path, fast) -> None:
    """The ratio cap is applied to the central directory: the 24 MB entry is never decompressed."""
    from etl.extract.zipcheck import check_series_zip

    root, cases, _ = corpus2
    uid = cases[1].series[0]
    with NbiaStandin(root, faults=Faults(zip_bomb=1, bomb_mb=24)) as s:
        import requests

        body = requests.get(s.api_url + "getImageWithMD5Hash", params={"SeriesInstanceUID": uid}, timeout=10).content
        reported = s.series[uid].meta["FileSize"]
    zpath = tmp_path / "bomb.zip"
    zpath.write_bytes(body)
    assert len(body) < 200_000  # 24 MB of padding travels in well under 200 KB
    from etl.extract.retry import PermanentError

    # with a cap above the bomb's ratio, the size agreement with NBIA still refuses it
    with pytest.raises(PermanentError, match="NBIA reports for the series"):
        check_series_zip(zpath, uid, 3, True, reported_bytes=reported, limits=Limits(max_ratio=5000))
    with pytest.raises(PermanentError, match=r"above the 100:1 cap") as err:
        check_series_zip(zpath, uid, 3, True, reported_bytes=None)
    assert err.value.where == f"series {uid}"


@pytest.mark.parametrize(
    ("knobs", "says"),
    [
        (dict(overlong_content=ALWAYS), r"the server announces \d+ bytes, more than the file handle's contentSize"),
        (dict(overlong_content=ALWAYS, no_content_length=ALWAYS), r"received more than the file handle's contentSize"),
    ],
    ids=["content-length", "no-content-length"],
)
def test_synapse_body_longer_than_content_size_is_refused_before_md5(knobs, says, syn_tree, tmp_path, fast,
                                                                     no_user_synapse_config) -> None:  # fmt: skip
    import re

    target = "train_test_splits.csv"
    with SynapseStandin(syn_tree, token=TOKEN, faults=Faults(**knobs)) as s:
        s.faults.targets = frozenset({target, s.id_of(target)})
        res = extract_synapse("syn60868042", tmp_path / "c", endpoint=s.origin, policy=fast,
                              config_path=no_user_synapse_config)  # fmt: skip
        fetches = s.file_fetches(s.id_of(target))
    [failed] = res.failed
    assert failed.relpath == target
    assert re.search(says, failed.reason) and "md5" not in failed.reason, failed.reason
    assert fetches == 1  # refused, not retried
    c = Cache(tmp_path / "c", create=False)
    want = {p.relative_to(syn_tree).as_posix() for p in syn_tree.rglob("*") if p.is_file()} - {target}
    assert {r.relpath for r in c.synapse_files()} == want
    assert c.verify(progress=False).ok and not list((tmp_path / "c" / "tmp").iterdir())


def test_short_disk_stops_the_run_naming_the_cache(corpus2, tmp_path, fast) -> None:
    """Free space below need + margin: one line naming the cache; nothing half-written."""
    from etl.extract.limits import CacheFull

    root, cases, manifest = corpus2
    seen: list[Path] = []

    def free(path: Path) -> int:
        seen.append(path)
        return 10 * 1024 * 1024  # 10 MB free, margin 64 MB

    limits = Limits(disk_margin=64 << 20, free_space=free)
    with NbiaStandin(root) as s, pytest.raises(CacheFull) as err:
        extract_tcia(manifest, tmp_path / "c", api_url=s.api_url, policy=fast, shipped_exclusions=False, jobs=1,
                     limits=limits)  # fmt: skip
        assert s.zip_fetches() == 0  # checked before the download
    assert err.value.where == str(tmp_path / "c") and "not enough free disk space" in err.value.what
    assert "\n" not in err.value.message and seen and seen[0] == tmp_path / "c"
    assert not [p for p in (tmp_path / "c" / "objects").rglob("*") if p.is_file()]


def test_short_disk_cli_is_one_line(corpus2, tmp_path, cli, monkeypatch) -> None:
    root, _, manifest = corpus2
    monkeypatch.setenv("MAMAMIA_EXTRACT_DISK_MARGIN_MB", str(10**9))  # a margin no disk has
    with NbiaStandin(root) as s:
        r = cli("extract", "tcia", "--manifest", manifest, "--cache", tmp_path / "c", "--api-url", s.api_url,
                "--retries", "0")  # fmt: skip
    assert r.exit_code == 2
    # one error line, last, no traceback (log lines of the run may precede it)
    errors = [x for x in r.stderr.splitlines() if x.startswith("error:")]
    assert len(errors) == 1 and r.stderr.strip().splitlines()[-1] == errors[0], r.stderr
    assert "Traceback" not in r.stderr
    line = errors[0]
    assert line.startswith("error: not enough free disk space") and line.endswith(f"({tmp_path / 'c'})")


def test_limits_from_the_environment_are_checked(monkeypatch) -> None:
    from etl.errors import ConfigError

    env = {"MAMAMIA_EXTRACT_MAX_RATIO": "40", "MAMAMIA_EXTRACT_SIZE_TOLERANCE": "0.1",
           "MAMAMIA_EXTRACT_SIZE_SLACK_KB": "8", "MAMAMIA_EXTRACT_DISK_MARGIN_MB": "1"}  # fmt: skip
    lim = Limits.from_env(env)
    assert (lim.max_ratio, lim.size_tolerance, lim.size_slack, lim.disk_margin) == (40.0, 0.1, 8192, 1 << 20)
    assert Limits.from_env(env, max_ratio=7).max_ratio == 7
    with pytest.raises(ConfigError, match="MAMAMIA_EXTRACT_MAX_RATIO must be a number"):
        Limits.from_env({"MAMAMIA_EXTRACT_MAX_RATIO": "lots"})
    with pytest.raises(ConfigError, match="cap must be >= 1"):
        Limits.from_env({"MAMAMIA_EXTRACT_MAX_RATIO": "0.5"})
    # the size agreement is two-sided, with the larger of the relative and the absolute slack
    assert lim.size_problem(1_000_000 + 100_000, 1_000_000) is None
    assert "more than" in lim.size_problem(1_000_000 + 100_001, 1_000_000)
    assert "less than" in lim.size_problem(10_000, 1_000_000)
    assert lim.size_problem(30_000, 25_000) is None  # 8 KB absolute slack for small series
    assert lim.ratio_problem("a.dcm", 900_000, 1) is None  # below the ratio floor (1 MiB)
    assert "41:1" in lim.ratio_problem("a.dcm", 41 << 20, 1 << 20)
    assert dataclasses.replace(lim, max_ratio=50).ratio_problem("a.dcm", 41 << 20, 1 << 20) is None


def test_synapse_large_file_overlong_is_refused_on_the_multipart_path(tmp_path, fast, no_user_synapse_config) -> None:
    """Files over 8 MiB go through synapseclient's ranged httpx path: the same contentSize bound applies."""
    import random

    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "weights.zip").write_bytes(random.Random(5).randbytes(9 << 20))
    with SynapseStandin(tree, token=TOKEN, faults=Faults(overlong_content=ALWAYS)) as s:
        res = extract_synapse("syn60868042", tmp_path / "c", endpoint=s.origin, policy=fast,
                              config_path=no_user_synapse_config)  # fmt: skip
        fetches = s.file_fetches()
    [failed] = res.failed
    assert "more than the file handle's contentSize 9437184 bytes" in failed.reason, failed.reason
    assert fetches == 1 and not [p for p in (tmp_path / "c" / "objects").rglob("*") if p.is_file()]
    with SynapseStandin(tree, token=TOKEN) as s:  # the honest server: the bounded client still downloads it
        res = extract_synapse("syn60868042", tmp_path / "c", endpoint=s.origin, policy=fast,
                              config_path=no_user_synapse_config)  # fmt: skip
    assert res.ok and res.count("fetched") == 1 and s.file_fetches() >= 2  # ranged parts
