"""Content-addressed download cache with an SQLite ledger.

Layout of a cache directory::

    objects/ab/abcdef...   one file per distinct content, named by its sha256, read-only
    tmp/                   downloads in flight (cleared when an extraction starts)
    ledger.sqlite          what every object is: TCIA series/file, Synapse entity/version

An object is hashed while it is still a temp file and renamed into ``objects/`` only if the hashes are
what the source promised, so ``objects/`` never holds a partial file. A TCIA series or a Synapse file is
entered in the ledger in one transaction after all its objects are stored: a series without a ledger row
is simply not there, and the next run fetches it again. Objects left without a ledger row by a killed run
are harmless (they are complete and verified) and are reused by content.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import sqlite3
import stat
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from etl.errors import ExtractError, InputUnreadable
from etl.types import StrPath

log = logging.getLogger("etl.extract.cache")

LEDGER = "ledger.sqlite"
CHUNK = 1 << 20

_SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    sha256 TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    md5 TEXT NOT NULL,
    added_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS objects_md5 ON objects(md5, size);
CREATE TABLE IF NOT EXISTS tcia_series (
    series_uid TEXT PRIMARY KEY,
    collection TEXT NOT NULL,
    patient_id TEXT NOT NULL,
    study_uid TEXT,
    modality TEXT,
    series_description TEXT,
    series_number TEXT,
    image_count INTEGER NOT NULL,
    n_files INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    md5_checked INTEGER NOT NULL,
    api_url TEXT NOT NULL,
    completed_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS tcia_series_patient ON tcia_series(collection, patient_id);
CREATE TABLE IF NOT EXISTS tcia_files (
    series_uid TEXT NOT NULL,
    name TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    md5 TEXT NOT NULL,
    PRIMARY KEY (series_uid, name)
);
CREATE TABLE IF NOT EXISTS synapse_files (
    syn_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    root_id TEXT NOT NULL,
    relpath TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    md5 TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    completed_at TEXT NOT NULL,
    PRIMARY KEY (syn_id, version)
);
CREATE INDEX IF NOT EXISTS synapse_root ON synapse_files(root_id, relpath);
"""


class CacheUnusable(ExtractError):
    """The cache directory or its ledger cannot be used (not writable, disk full, corrupt ledger)."""

    exit_code = 2


def _sqlite_problem(exc: sqlite3.Error, path: Path) -> CacheUnusable:
    text = str(exc)
    if isinstance(exc, sqlite3.OperationalError) and any(
        k in text for k in ("readonly", "read-only", "unable to open", "disk I/O", "locked")
    ):
        return CacheUnusable(f"cannot write the ledger: {text}", str(path))
    if "full" in text:
        return CacheUnusable(f"cannot write the ledger: {text}", str(path))
    return CacheUnusable(
        f"the ledger is unreadable ({text}); move it aside and rerun the extraction to rebuild it", str(path)
    )


def _os_problem(exc: OSError, what: str, path: StrPath) -> CacheUnusable:
    return CacheUnusable(f"{what}: {exc.strerror or exc}", str(path))


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def hash_file(path: StrPath) -> tuple[str, str, int]:
    """(sha256, md5, size) of a file, read once."""
    sha, md5, size = hashlib.sha256(), hashlib.md5(usedforsecurity=False), 0
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            sha.update(chunk)
            md5.update(chunk)
            size += len(chunk)
    return sha.hexdigest(), md5.hexdigest(), size


@dataclass(frozen=True)
class StoredObject:
    sha256: str
    md5: str
    size: int


@dataclass(frozen=True)
class SeriesFile:
    """One file of a TCIA series as the ledger records it."""

    name: str
    sha256: str
    md5: str
    size: int


@dataclass(frozen=True)
class SeriesRecord:
    series_uid: str
    collection: str
    patient_id: str
    study_uid: str | None
    modality: str | None
    series_description: str | None
    series_number: str | None
    image_count: int
    n_files: int
    bytes: int
    md5_checked: bool
    api_url: str
    completed_at: str = ""

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> SeriesRecord:
        """A ``tcia_series`` ledger row (``md5_checked`` stored as 0/1)."""
        values = list(row)
        values[10] = bool(values[10])
        return cls(*values)


@dataclass(frozen=True)
class SynapseRecord:
    syn_id: str
    version: int
    root_id: str
    relpath: str
    sha256: str
    size: int
    md5: str
    endpoint: str
    completed_at: str = ""


@dataclass
class VerifyReport:
    """What ``Cache.verify`` found; ``ok`` is False if anything recorded is missing or corrupt."""

    checked: int = 0
    bytes: int = 0
    bad: list[tuple[str, str]] = field(default_factory=list)  # (object or record, reason)
    unrecorded: list[str] = field(default_factory=list)  # complete objects no ledger row points to yet
    stale_tmp: int = 0

    @property
    def ok(self) -> bool:
        return not self.bad


class Cache:
    """A cache directory: objects by sha256 plus the ledger. Safe to share between threads."""

    def __init__(self, root: StrPath, create: bool = True, readonly: bool = False) -> None:
        """``readonly`` (for ls/verify): open the ledger read-only and create nothing, so an archived cache on
        a read-only mount can still be audited."""
        self.root = Path(root)
        self.readonly = readonly
        try:
            has_ledger = (self.root / LEDGER).is_file()
        except OSError as exc:  # e.g. a parent directory this user may not enter
            raise _os_problem(exc, "cannot read the cache", self.root) from None
        if (not create or readonly) and not has_ledger:
            raise InputUnreadable("not a download cache (no ledger.sqlite)", str(self.root))
        self.objects_dir = self.root / "objects"
        self.tmp_root = self.root / "tmp"
        self._local = threading.local()
        if not readonly:
            for d in (self.objects_dir, self.tmp_root):
                try:
                    d.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise _os_problem(exc, "cannot create the cache directory", d) from None
            if not os.access(self.root, os.W_OK) or not os.access(self.tmp_root, os.W_OK):
                raise CacheUnusable("the cache directory is not writable", str(self.root))
        try:
            db = self._db()
            if not readonly:
                db.executescript(_SCHEMA)
            db.execute("SELECT COUNT(*) FROM objects").fetchone()
        except sqlite3.Error as exc:
            self.close()
            raise _sqlite_problem(exc, self.root / LEDGER) from None

    # ------------------------------------------------------------------ ledger plumbing
    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            path = self.root / LEDGER
            if self.readonly:
                uri = f"{path.resolve().as_uri()}?mode=ro"
                db = sqlite3.connect(uri, uri=True, timeout=60, isolation_level=None)
                try:
                    db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
                except sqlite3.OperationalError:
                    # a read-only mount: WAL mode needs a writable -shm. A cleanly closed ledger has no WAL left,
                    # so reading it as immutable is exact; a WAL with frames holds committed rows that an
                    # immutable read would silently miss, so that case is refused.
                    db.close()
                    wal = path.with_name(path.name + "-wal")
                    try:
                        pending = wal.stat().st_size > 0
                    except FileNotFoundError:
                        pending = False
                    except OSError as exc:
                        raise _os_problem(exc, "cannot read the ledger's write-ahead log", wal) from None
                    if pending:
                        raise CacheUnusable(
                            f"the ledger has changes not yet merged from {wal.name} and cannot be read on this "
                            "read-only mount without them; open the cache writable once (any `mamamia extract` "
                            "run with this --cache merges them), then retry", str(wal))
                    db = sqlite3.connect(uri + "&immutable=1", uri=True, timeout=60, isolation_level=None)
            else:
                db = sqlite3.connect(path, timeout=60, isolation_level=None)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                db.execute("PRAGMA busy_timeout=60000")
            self._local.db = db
        return db

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        db = self._db()
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise _sqlite_problem(exc, self.root / LEDGER) from None
        try:
            yield db
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise _sqlite_problem(exc, self.root / LEDGER) from None
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise
        try:
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise _sqlite_problem(exc, self.root / LEDGER) from None

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    @contextlib.contextmanager
    def exclusive(self, what: str) -> Iterator[None]:
        """Hold the cache's writer lock for a whole extraction run (two runs would clear each other's tmp)."""
        import fcntl

        try:
            fh = open(self.root / ".lock", "a+")
        except OSError as exc:
            raise _os_problem(exc, "cannot lock the cache", self.root / ".lock") from None
        try:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                raise ExtractError("another extraction is writing to this cache", str(self.root)) from exc
            fh.seek(0)
            fh.truncate()
            fh.write(f"{os.getpid()} {what}\n")
            fh.flush()
            yield
        finally:
            fh.close()

    # ------------------------------------------------------------------ objects
    def object_path(self, sha256: str) -> Path:
        return self.objects_dir / sha256[:2] / sha256

    def clear_tmp(self) -> int:
        """Remove downloads left in flight by a killed run; returns how many entries went."""
        n = 0
        for p in self.tmp_root.iterdir():
            n += 1
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
        return n

    @contextlib.contextmanager
    def scratch(self, label: str) -> Iterator[Path]:
        """A private temp directory inside the cache (same filesystem, so stored objects are renamed)."""
        import tempfile

        try:
            d = Path(tempfile.mkdtemp(prefix=f"{_safe_label(label)}.", dir=self.tmp_root))
        except OSError as exc:
            raise _os_problem(exc, "cannot write to the cache", self.tmp_root) from None
        try:
            yield d
        finally:
            shutil.rmtree(d, ignore_errors=True)

    def has_object(self, sha256: str) -> bool:
        return self.object_path(sha256).is_file()

    def find_by_md5(self, md5: str, size: int) -> StoredObject | None:
        """An object already stored with this md5 and size, if it is still on disk."""
        row = self._db().execute("SELECT sha256, md5, size FROM objects WHERE md5=? AND size=?", (md5, size)).fetchone()
        if row and self.has_object(row[0]):
            return StoredObject(*row)
        return None

    def put_file(self, path: StrPath, expect_md5: str | None = None, where: str = "") -> StoredObject:
        """Move a finished temp file into the store after hashing it.

        ``expect_md5`` (from the server) must match or the file is deleted and ``ExtractError`` raised.
        The source file is consumed (renamed, or deleted if an identical object exists).
        """
        path = Path(path)
        sha, md5, size = hash_file(path)
        if expect_md5 is not None and md5 != expect_md5.lower():
            path.unlink(missing_ok=True)
            raise ExtractError(f"md5 mismatch: got {md5}, server says {expect_md5}", where or path.name)
        target = self.object_path(sha)
        try:
            if target.is_file():
                path.unlink()
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                os.chmod(path, stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
                os.replace(path, target)
        except OSError as exc:
            raise _os_problem(exc, "cannot store an object in the cache", target) from None
        self._record_object(sha, md5, size)
        return StoredObject(sha, md5, size)

    def _record_object(self, sha: str, md5: str, size: int) -> None:
        with self._tx() as db:
            db.execute("INSERT OR IGNORE INTO objects VALUES (?,?,?,?)", (sha, size, md5, _now()))

    # ------------------------------------------------------------------ TCIA
    def series_done(self, series_uid: str) -> SeriesRecord | None:
        """The ledger row of a completely stored series whose objects are all still on disk."""
        row = self._db().execute("SELECT * FROM tcia_series WHERE series_uid=?", (series_uid,)).fetchone()
        if row is None:
            return None
        rec = SeriesRecord.from_row(row)
        files = self.series_files(series_uid)
        if len(files) != rec.n_files or not all(self.has_object(f.sha256) for f in files):
            return None
        return rec

    def series_files(self, series_uid: str) -> list[SeriesFile]:
        rows = self._db().execute(
            "SELECT name, sha256, md5, size FROM tcia_files WHERE series_uid=? ORDER BY name", (series_uid,)
        ).fetchall()
        return [SeriesFile(*r) for r in rows]

    def record_series(self, rec: SeriesRecord, files: list[SeriesFile]) -> None:
        """Enter a series and its files in one transaction (all objects must already be stored)."""
        missing = [f.name for f in files if not self.has_object(f.sha256)]
        if missing:
            raise ExtractError(f"{len(missing)} objects missing from the store", f"series {rec.series_uid}")
        with self._tx() as db:
            db.execute("DELETE FROM tcia_files WHERE series_uid=?", (rec.series_uid,))
            db.executemany(
                "INSERT INTO tcia_files VALUES (?,?,?,?,?)",
                [(rec.series_uid, f.name, f.sha256, f.size, f.md5) for f in files],
            )
            db.execute(
                "INSERT OR REPLACE INTO tcia_series VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    rec.series_uid, rec.collection, rec.patient_id, rec.study_uid, rec.modality,
                    rec.series_description, rec.series_number, rec.image_count, rec.n_files, rec.bytes,
                    int(rec.md5_checked), rec.api_url, rec.completed_at or _now(),
                ),
            )  # fmt: skip

    def series_for_patient(self, collection: str, patient_id: str) -> list[SeriesRecord]:
        rows = self._db().execute(
            "SELECT * FROM tcia_series WHERE collection=? AND patient_id=? ORDER BY series_number, series_uid",
            (collection, patient_id),
        ).fetchall()
        return [SeriesRecord.from_row(r) for r in rows]

    def all_series(self) -> list[SeriesRecord]:
        rows = self._db().execute("SELECT * FROM tcia_series ORDER BY collection, patient_id, series_uid").fetchall()
        return [SeriesRecord.from_row(r) for r in rows]

    # ------------------------------------------------------------------ Synapse
    def synapse_done(self, syn_id: str, version: int) -> SynapseRecord | None:
        row = self._db().execute(
            "SELECT * FROM synapse_files WHERE syn_id=? AND version=?", (syn_id, version)
        ).fetchone()
        if row is None or not self.has_object(row[4]):
            return None
        return SynapseRecord(*row)

    def record_synapse(self, rec: SynapseRecord) -> None:
        if not self.has_object(rec.sha256):
            raise ExtractError("object missing from the store", f"{rec.syn_id}.{rec.version} {rec.relpath}")
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO synapse_files VALUES (?,?,?,?,?,?,?,?,?)",
                (rec.syn_id, rec.version, rec.root_id, rec.relpath, rec.sha256, rec.size, rec.md5, rec.endpoint,
                 rec.completed_at or _now()),
            )  # fmt: skip

    def synapse_files(self, root_id: str | None = None) -> list[SynapseRecord]:
        sql = "SELECT * FROM synapse_files"
        args: tuple[str, ...] = ()
        if root_id:
            sql += " WHERE root_id=?"
            args = (root_id,)
        return [SynapseRecord(*r) for r in self._db().execute(sql + " ORDER BY root_id, relpath, version", args)]

    # ------------------------------------------------------------------ audit
    def verify(self, progress: bool = True) -> VerifyReport:
        """Re-hash every recorded object and check every ledger row points at one."""
        from etl.progress import track

        report = VerifyReport()
        db = self._db()
        try:
            problems = [r[0] for r in db.execute("PRAGMA integrity_check(20)")]
        except sqlite3.Error as exc:
            problems = [str(exc)]
        if problems != ["ok"]:
            report.bad += [(LEDGER, f"SQLite integrity check: {p}") for p in problems]
        rows = db.execute("SELECT sha256, size, md5 FROM objects ORDER BY sha256").fetchall()
        recorded = set()
        items: Iterable[tuple[str, int, str]] = track(rows, "verify objects", len(rows)) if progress else rows
        for sha, size, md5 in items:
            recorded.add(sha)
            path = self.object_path(sha)
            report.checked += 1
            if not path.is_file():
                report.bad.append((sha, "missing from objects/"))
                continue
            got_sha, got_md5, got_size = hash_file(path)
            report.bytes += got_size
            if got_size != size:
                report.bad.append((sha, f"size {got_size} != recorded {size}"))
            elif got_sha != sha:
                report.bad.append((sha, f"content hashes to {got_sha}"))
            elif got_md5 != md5:
                report.bad.append((sha, f"md5 {got_md5} != recorded {md5}"))
        for uid, name, sha in db.execute("SELECT series_uid, name, sha256 FROM tcia_files"):
            if sha not in recorded:
                report.bad.append((f"series {uid} file {name}", f"object {sha} not in the ledger"))
        for uid, n in db.execute(
            "SELECT s.series_uid, s.n_files FROM tcia_series s "
            "LEFT JOIN (SELECT series_uid, COUNT(*) c FROM tcia_files GROUP BY series_uid) f USING (series_uid) "
            "WHERE COALESCE(f.c, 0) != s.n_files"
        ):
            report.bad.append((f"series {uid}", f"ledger lists a different number of files than n_files={n}"))
        for syn, ver, rel, sha in db.execute("SELECT syn_id, version, relpath, sha256 FROM synapse_files"):
            if sha not in recorded:
                report.bad.append((f"{syn}.{ver} {rel}", f"object {sha} not in the ledger"))
        for sub in sorted(self.objects_dir.iterdir()) if self.objects_dir.is_dir() else []:
            if not sub.is_dir():
                report.bad.append((sub.name, "stray file in objects/"))
                continue
            for p in sorted(sub.iterdir()):
                if p.name.startswith("."):
                    report.stale_tmp += 1
                elif p.name not in recorded:
                    # complete (renamed only after hashing) but its ledger row was never written
                    if hash_file(p)[0] == p.name:
                        report.unrecorded.append(p.name)
                    else:
                        report.bad.append((p.name, "unrecorded object whose content does not match its name"))
        if self.tmp_root.is_dir():
            report.stale_tmp += sum(1 for _ in self.tmp_root.iterdir())
        return report

    def stats(self) -> dict[str, int]:
        db = self._db()
        return {
            "objects": db.execute("SELECT COUNT(*) FROM objects").fetchone()[0],
            "bytes": db.execute("SELECT COALESCE(SUM(size),0) FROM objects").fetchone()[0],
            "tcia_series": db.execute("SELECT COUNT(*) FROM tcia_series").fetchone()[0],
            "tcia_files": db.execute("SELECT COUNT(*) FROM tcia_files").fetchone()[0],
            "synapse_files": db.execute("SELECT COUNT(*) FROM synapse_files").fetchone()[0],
        }


def _safe_label(label: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in label)[:80] or "tmp"
