"""Synapse extraction: the real synapseclient against the Synapse stand-in."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from pathlib import Path

import pytest
from extract_dicomgen import TOKEN

from etl.errors import EtlError
from etl.extract.cache import Cache
from etl.extract.synapse import extract_synapse
from etl.standins.faults import ALWAYS, Faults
from etl.standins.synapse import SynapseStandin

ROOT = "syn60868042"


def tree_files(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}  # fmt: skip


def run(s: SynapseStandin, cache: Path, policy, config: str, **kw):  # type: ignore[no-untyped-def]
    return extract_synapse(ROOT, cache, endpoint=s.origin, policy=policy, config_path=config, **kw)


def assert_clean(cache: Path, expect: dict[str, str]) -> None:
    c = Cache(cache, create=False)
    rep = c.verify(progress=False)
    assert rep.ok, rep.bad
    got = {r.relpath: r.sha256 for r in c.synapse_files(ROOT)}
    assert got == expect


def test_tree_downloads_with_relative_paths_and_md5(syn_tree2, tmp_path, fast, no_user_synapse_config) -> None:
    with SynapseStandin(syn_tree2, token=TOKEN, page_size=2) as s:
        res = run(s, tmp_path / "c", fast, no_user_synapse_config)
    want = tree_files(syn_tree2)
    assert res.ok and res.count("fetched") == len(want) == 8
    assert_clean(tmp_path / "c", want)
    # the client walked with paged /entity/children and downloaded through pre-signed URLs
    assert len(s.requests("/entity/children")) > 4
    assert s.file_fetches() == 8
    assert all(e.auth == "ok" for e in s.log if e.path.startswith(("/repo", "/file")))
    rec = Cache(tmp_path / "c").synapse_done(s.id_of("clinical_and_imaging_info.xlsx"), 1)
    assert rec.md5 == hashlib.md5((syn_tree2 / "clinical_and_imaging_info.xlsx").read_bytes()).hexdigest()


def test_rerun_and_include_glob(syn_tree2, tmp_path, fast, no_user_synapse_config) -> None:
    with SynapseStandin(syn_tree2, token=TOKEN) as s:
        res = run(s, tmp_path / "c", fast, no_user_synapse_config, include=["images/SYNTH_001/*"])
        assert {o.relpath for o in res.outcomes} == {"images/SYNTH_001/synth_001_0000.nii.gz",
                                                    "images/SYNTH_001/synth_001_0001.nii.gz"}  # fmt: skip
        assert s.file_fetches() == 2
        res2 = run(s, tmp_path / "c", fast, no_user_synapse_config)
    assert res2.count("cached") == 2 and res2.count("fetched") == 6
    assert s.file_fetches() == 8  # the two from the first run were not fetched again


def test_same_md5_elsewhere_is_linked_not_downloaded(tmp_path, fast, no_user_synapse_config) -> None:
    tree = tmp_path / "tree"
    (tree / "a").mkdir(parents=True)
    (tree / "b").mkdir()
    (tree / "a" / "x.bin").write_bytes(b"same bytes" * 100)
    (tree / "b" / "y.bin").write_bytes(b"same bytes" * 100)
    with SynapseStandin(tree, token=TOKEN) as s:
        res = run(s, tmp_path / "c", dataclasses.replace(fast), no_user_synapse_config, jobs=1)
    assert sorted(o.status for o in res.outcomes) == ["fetched", "linked"]
    assert s.file_fetches() == 1
    assert Cache(tmp_path / "c").stats()["objects"] == 1


@pytest.mark.parametrize(
    ("knob", "fired"),
    [
        (dict(http500=2), 2),
        (dict(drop_mid_body=1), 1),
        (dict(wrong_md5=1), 1),
        (dict(slow_first_byte=1.0, slow_count=1), 1),
    ],
    ids=["http500", "drop_mid_body", "wrong_md5", "slow_first_byte"],
)
def test_transient_faults_recover(knob, fired, syn_tree2, tmp_path, fast, no_user_synapse_config) -> None:
    target = "train_test_splits.csv"
    with SynapseStandin(syn_tree2, token=TOKEN, faults=Faults(targets=frozenset({target, "x"}), **knob)) as s:
        s.faults.targets = frozenset({target, s.id_of(target)})
        res = run(s, tmp_path / "c", dataclasses.replace(fast, timeout=0.5), no_user_synapse_config)
    assert res.ok, res.failure_lines()
    assert s.faults.fired == {next(iter(knob)): fired}
    assert_clean(tmp_path / "c", tree_files(syn_tree2))


def test_persistent_wrong_md5_fails_and_keeps_nothing(syn_tree2, tmp_path, fast, no_user_synapse_config) -> None:
    target = "clinical_and_imaging_info.xlsx"
    with SynapseStandin(syn_tree2, token=TOKEN, faults=Faults(wrong_md5=ALWAYS, targets=frozenset({target}))) as s:
        res = run(s, tmp_path / "c", fast, no_user_synapse_config)
        syn_id = s.id_of(target)
    [failed] = res.failed
    assert failed.relpath == target and failed.syn_id == syn_id and "md5 mismatch" in failed.reason
    assert any(target in line for line in res.failure_lines())
    want = tree_files(syn_tree2)
    sha = want.pop(target)
    assert not Cache(tmp_path / "c").has_object(sha)
    assert_clean(tmp_path / "c", want)


def test_entity_name_escaping_the_tree_is_refused(syn_tree2, tmp_path, fast, no_user_synapse_config) -> None:
    with SynapseStandin(syn_tree2, token=TOKEN, faults=Faults(zip_slip=1, targets=frozenset({"train_test_splits.csv"}))) as s:
        res = run(s, tmp_path / "c", fast, no_user_synapse_config)
    assert not res.ok
    [(where, why)] = res.walk_failures
    assert "../train_test_splits.csv" in why and "unsafe entity name" in why
    assert not list(tmp_path.rglob("train_test_splits.csv"))


def test_wrong_token_is_401_and_never_echoed(syn_tree2, tmp_path, fast, monkeypatch) -> None:
    wrong = "wrong-token-" + "Yy77Kk"
    monkeypatch.setenv("SYNAPSE_AUTH_TOKEN", wrong)
    with SynapseStandin(syn_tree2, token=TOKEN) as s, pytest.raises(EtlError) as err:
        run(s, tmp_path / "c", fast, str(tmp_path / "none"))
    assert "refused the credentials (401)" in err.value.message
    assert wrong not in err.value.message and TOKEN not in err.value.message
    assert [e.auth for e in s.log] == ["bad"]  # refused once, not retried


def test_token_never_in_logs_errors_or_ledger(syn_tree2, tmp_path, fast, no_user_synapse_config, caplog, capfd) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("synapseclient", "synapseclient_default", "synapseclient_debug", "httpx", "urllib3", "etl"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    target = "clinical_and_imaging_info.xlsx"
    faults = Faults(http500=1, wrong_md5=ALWAYS, drop_mid_body=1, targets=frozenset({target}))
    with SynapseStandin(syn_tree2, token=TOKEN, faults=faults) as s:
        faults.targets = frozenset({target, s.id_of(target)})
        res = run(s, tmp_path / "c", fast, no_user_synapse_config)
    assert not res.ok and faults.fired["wrong_md5"] >= 1
    out, err = capfd.readouterr()
    texts = [caplog.text, out, err, "\n".join(res.failure_lines()), repr(s.log)]
    assert all(TOKEN not in t for t in texts)
    for p in (tmp_path / "c").rglob("*"):
        if p.is_file():
            assert TOKEN.encode() not in p.read_bytes(), p


@pytest.mark.slow
def test_twenty_case_tree_with_faults_ends_verified(syn_tree20, tmp_path, fast, no_user_synapse_config) -> None:
    faults = Faults(http500=3, drop_mid_body=2, wrong_md5=2, slow_first_byte=1.0, slow_count=1)
    with SynapseStandin(syn_tree20, token=TOKEN, faults=faults, page_size=7) as s:
        res = run(s, tmp_path / "c", dataclasses.replace(fast, timeout=0.5), no_user_synapse_config, jobs=2)
    assert res.ok, res.failure_lines()
    assert res.count("fetched") == 62
    assert faults.fired == {"http500": 3, "drop_mid_body": 2, "wrong_md5": 2, "slow_first_byte": 1}
    assert_clean(tmp_path / "c", tree_files(syn_tree20))


def test_large_file_takes_the_multipart_path(tmp_path, fast, no_user_synapse_config) -> None:
    """> 8 MiB: synapseclient downloads ranged parts in threads (needs X-Amz-Date/Expires and Range)."""
    import numpy as np

    tree = tmp_path / "big"
    tree.mkdir()
    data = np.random.default_rng(1).bytes(9 * 1024 * 1024 + 123)
    (tree / "model.zip").write_bytes(data)
    with SynapseStandin(tree, token=TOKEN) as s:
        res = run(s, tmp_path / "c", fast, no_user_synapse_config)
    assert res.ok and res.count("fetched") == 1
    ranged = [e for e in s.log if e.path.startswith("/s3/") and e.status == 206]
    assert len(ranged) >= 2
    assert_clean(tmp_path / "c", {"model.zip": hashlib.sha256(data).hexdigest()})


def test_export_keeps_relative_paths(syn_tree2, tmp_path, fast, no_user_synapse_config) -> None:
    from etl.extract.export import export_synapse

    with SynapseStandin(syn_tree2, token=TOKEN) as s:
        run(s, tmp_path / "c", fast, no_user_synapse_config)
    res = export_synapse(tmp_path / "c", tmp_path / "out", root_id=ROOT)
    assert res.ok and res.files == 8
    assert tree_files(tmp_path / "out") == tree_files(syn_tree2)


def test_a_full_disk_stops_the_run_instead_of_retrying_every_file(syn_tree2, tmp_path, fast, no_user_synapse_config,
                                                                  monkeypatch) -> None:
    """The cache cannot store anything: the run stops at once (as TCIA does), it does not fetch every file
    attempts x over and mark each one failed."""
    import errno

    import etl.extract.cache as cache_module
    from etl.extract.cache import CacheUnusable

    def full(*_a, **_k):  # type: ignore[no-untyped-def]
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cache_module.os, "replace", full)
    with SynapseStandin(syn_tree2, token=TOKEN) as s, pytest.raises(CacheUnusable, match="No space left"):
        run(s, tmp_path / "c", fast, no_user_synapse_config, jobs=2)
    # before: all 8 files fetched 4 times each (32) and each marked failed; now only what was in flight
    assert s.file_fetches() <= 4
