"""The read-only ledger open (``cache ls/verify/export`` on an archived cache): the immutable fallback is used
only when it is exact, i.e. when no write-ahead log holds committed rows the main file lacks.

The read-only mount is reproduced with a real file-system condition rather than a mock: ``ledger.sqlite-shm``
is a symlink into a folder that does not exist, so SQLite can neither open nor create its shared-memory file,
exactly as on a read-only mount, and ``mode=ro`` fails the same way (checked against a real read-only bind
mount; permission bits would not do, tests may run as root)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from extract_fixtures import put_bytes

from etl.extract.cache import LEDGER, Cache, CacheUnusable, SeriesFile, SeriesRecord


def _record(c: Cache, uid: str) -> None:
    obj = put_bytes(c, uid.encode())
    rec = SeriesRecord(uid, "Coll", "P1", None, "MR", None, "1", 1, 1, obj.size, True, "http://x/")
    c.record_series(rec, [SeriesFile("a.dcm", obj.sha256, obj.md5, obj.size)])


def _unshareable(root: Path) -> None:
    """SQLite cannot create or open ``-shm`` here (as on a read-only mount)."""
    (root / (LEDGER + "-shm")).symlink_to(root / "no-such-folder" / "shm")


def _copy_cache(src: Path, dst: Path) -> None:
    """Copy a cache while its writer is still open: the copy has the writer's WAL (a crash snapshot)."""
    dst.mkdir()
    for name in (LEDGER, LEDGER + "-wal"):
        if (src / name).exists():
            shutil.copy2(src / name, dst / name)
    shutil.copytree(src / "objects", dst / "objects")


def test_cleanly_closed_ledger_reads_as_immutable(tmp_path: Path) -> None:
    c = Cache(tmp_path / "c")
    _record(c, "1.2.3")
    c.close()
    assert not (tmp_path / "c" / (LEDGER + "-wal")).exists()  # closed: everything merged into the main file
    _unshareable(tmp_path / "c")
    ro = Cache(tmp_path / "c", create=False, readonly=True)
    assert [s.series_uid for s in ro.all_series()] == ["1.2.3"]


def test_ledger_with_unmerged_wal_is_refused_with_the_fix(tmp_path: Path) -> None:
    c = Cache(tmp_path / "c")
    _record(c, "1.2.3")
    _record(c, "4.5.6")
    copy = tmp_path / "copy"
    _copy_cache(tmp_path / "c", copy)  # writer still open: its rows are in the WAL, not in ledger.sqlite
    c.close()
    assert (copy / (LEDGER + "-wal")).stat().st_size > 0
    _unshareable(copy)
    with pytest.raises(CacheUnusable) as info:
        Cache(copy, create=False, readonly=True)
    err = info.value
    assert "open the cache writable once" in err.what and "\n" not in err.what
    assert err.where == str(copy / (LEDGER + "-wal"))

    # the refusal is needed: an immutable read of that ledger silently lacks the committed series
    import sqlite3

    db = sqlite3.connect(f"{(copy / LEDGER).resolve().as_uri()}?mode=ro&immutable=1", uri=True)
    try:
        seen = {r[0] for r in db.execute("SELECT series_uid FROM series")}
    except sqlite3.OperationalError:  # not even the table: the schema itself is still in the WAL
        seen = set()
    db.close()
    assert seen != {"1.2.3", "4.5.6"}

    # the fix the message names: opened writable once, the WAL is merged and the read-only open works
    (copy / (LEDGER + "-shm")).unlink()
    Cache(copy).close()
    assert not (copy / (LEDGER + "-wal")).exists()
    _unshareable(copy)
    ro = Cache(copy, create=False, readonly=True)
    assert sorted(s.series_uid for s in ro.all_series()) == ["1.2.3", "4.5.6"]
