"""The ratings store: one SQLite file, every rating ever given, the latest one counts.

Why SQLite and these settings:

- Every rating is its own committed transaction before the HTTP response is sent, so a killed server (even
  SIGKILL) loses nothing a rater saw confirmed (``synchronous=FULL``).
- WAL journal and a busy timeout let several raters (several servers or threads on one file) write at once
  without "database is locked" errors: writers queue for a few milliseconds instead of failing.
- Re-rating appends a row (history kept for audit); the latest row of a (case, rater) counts. "Latest" is
  the highest ``id`` (insertion order), which is also the latest ``rated_at`` unless a clock went back.
- Each row records the sha256 of the mask file that was rated: a rating of a mask that has changed since is
  *stale* (see ``is_stale``).

Scores are spelled ``good | acceptable | poor | missed`` (MAMA-MIA's four classes).

    >>> db = open_store("review.sqlite")
    >>> add_rating(db, "DUKE_001", "alice", "good", mask_sha256="ab12...")
    >>> latest_ratings(db)          # {"DUKE_001": "good"}
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from etl.errors import InputUnreadable, ValidationFailed
from etl.types import StrPath

if TYPE_CHECKING:
    import pandas as pd

SCORES: tuple[str, ...] = ("good", "acceptable", "poor", "missed")
SCORE_LABELS: dict[str, str] = {"good": "Good", "acceptable": "Acceptable", "poor": "Poor", "missed": "Missed"}
SCORE_HELP: dict[str, str] = {
    "good": "no major correction needed",
    "acceptable": "tumour captured, a few wrong voxels",
    "poor": "many voxels outside the tumour",
    "missed": "an unrelated area, the tumour is missed",
}
EXPORT_COLUMNS: tuple[str, ...] = ("patient_id", "rater", "score", "comment", "rated_at", "mask_sha256", "app_version")
MAX_COMMENT = 4000
MAX_RATER = 100
BUSY_TIMEOUT_MS = 30_000
SCHEMA_VERSION = 1

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS ratings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    patient_id TEXT NOT NULL,
    rater TEXT NOT NULL,
    score TEXT NOT NULL CHECK (score IN ({", ".join(repr(s) for s in SCORES)})),
    comment TEXT NOT NULL DEFAULT '',
    rated_at TEXT NOT NULL,
    mask_sha256 TEXT,
    app_version TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS ratings_case_rater ON ratings (patient_id, rater, id);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', '{SCHEMA_VERSION}');
"""
# latest row per (case, rater)
_LATEST = """
SELECT r.* FROM ratings r
JOIN (SELECT patient_id, rater, MAX(id) AS id FROM ratings GROUP BY patient_id, rater) m ON r.id = m.id
"""


@dataclass(frozen=True)
class Rating:
    """One row of the store."""

    id: int
    patient_id: str
    rater: str
    score: str
    comment: str
    rated_at: str  # ISO 8601 UTC, e.g. 2026-12-03T08:12:14.123456Z
    mask_sha256: str | None
    app_version: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def is_stale(self, current_mask_sha256: str | None) -> bool:
        """True when the rated mask is not the current one (a rating without a recorded hash is never stale)."""
        return bool(self.mask_sha256) and bool(current_mask_sha256) and self.mask_sha256 != current_mask_sha256


class Store:
    """An open ratings database. Safe to share between threads (one connection, a lock around each use);
    several processes may open the same file."""

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self._conn = conn
        self._lock = threading.Lock()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """A write transaction, committed (durably) before the block's caller goes on."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return list(self._conn.execute(sql, params))

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_store(path: StrPath, create: bool = True) -> Store:
    """Open (or create) a ratings database; ``create=False`` refuses a missing file (export, agreement)."""
    p = Path(path)
    if not create and not p.is_file():
        raise InputUnreadable("no ratings database", str(p))
    if create:
        p.parent.mkdir(parents=True, exist_ok=True)
    try:
        conn = sqlite3.connect(str(p), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise InputUnreadable(f"cannot use write-ahead logging (journal mode {mode}); is the file on a network share?",
                                  str(p))
        conn.execute("PRAGMA synchronous = FULL")
        conn.executescript(_SCHEMA)
        cols = {r[1] for r in conn.execute("PRAGMA table_info(ratings)")}
    except sqlite3.DatabaseError as exc:
        raise InputUnreadable(f"not a ratings database: {exc}", str(p)) from exc
    missing = [c for c in EXPORT_COLUMNS if c not in cols]
    if missing:
        conn.close()
        raise InputUnreadable(f"ratings table lacks columns {missing}", str(p))
    return Store(p, conn)


def _as_store(db: Store | StrPath) -> Store:
    return db if isinstance(db, Store) else open_store(db, create=False)


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def check_score(score: str) -> str:
    s = str(score).strip().lower()
    if s not in SCORES:
        raise ValidationFailed(f"score must be one of {', '.join(SCORES)}, got {score!r}", "score")
    return s


def check_rater(rater: str) -> str:
    r = str(rater).strip()
    if not r or len(r) > MAX_RATER or any(ord(ch) < 32 for ch in r):
        raise ValidationFailed(f"rater name must be 1-{MAX_RATER} printable characters, got {rater!r}", "rater")
    return r


def add_rating(db: Store, patient_id: str, rater: str, score: str, comment: str = "",
               mask_sha256: str | None = None, app_version: str | None = None, rated_at: str | None = None) -> Rating:
    """Append a rating and commit it before returning (the caller may then answer the rater)."""
    from etl import __version__

    score = check_score(score)
    rater = check_rater(rater)
    comment = (comment or "").strip()
    if len(comment) > MAX_COMMENT:
        raise ValidationFailed(f"comment longer than {MAX_COMMENT} characters", "comment")
    row = (patient_id, rater, score, comment, rated_at or utc_now(), mask_sha256, app_version or __version__)
    with db._tx() as conn:
        cur = conn.execute("INSERT INTO ratings (patient_id, rater, score, comment, rated_at, mask_sha256, app_version)"
                           " VALUES (?, ?, ?, ?, ?, ?, ?)", row)
        rid = int(cur.lastrowid or 0)
    return Rating(rid, *row)


def _rating(r: sqlite3.Row) -> Rating:
    return Rating(int(r["id"]), r["patient_id"], r["rater"], r["score"], r["comment"], r["rated_at"],
                  r["mask_sha256"], r["app_version"])


def latest_by_rater(db: Store | StrPath, rater: str | None = None) -> dict[tuple[str, str], Rating]:
    """The latest rating per (patient_id, rater) (only ``rater``'s when given)."""
    store = _as_store(db)
    sql, params = _LATEST, tuple[str, ...]()
    if rater is not None:
        sql, params = _LATEST + " WHERE r.rater = ?", (rater,)
    return {(r["patient_id"], r["rater"]): _rating(r) for r in store.query(sql + " ORDER BY r.id", params)}


def latest_rows(db: Store | StrPath) -> dict[str, Rating]:
    """Per case, the most recent rating given by any rater (highest id), as a full ``Rating``."""
    out: dict[str, Rating] = {}
    for (pid, _), rating in sorted(latest_by_rater(db).items(), key=lambda kv: kv[1].id):
        out[pid] = rating  # later ids overwrite earlier ones
    return out


def latest_ratings(db: Store | StrPath) -> dict[str, str]:
    """Per case, one score: the most recent rating of ANY rater (the last word on the case).

    This is what a stratification needs (one class per case, e.g. balanced assignment to experts). For the
    agreement between raters, use ``latest_by_rater`` (one latest rating per case and rater)."""
    return {pid: r.score for pid, r in latest_rows(db).items()}


def history(db: Store | StrPath, patient_id: str, rater: str | None = None) -> list[Rating]:
    """Every rating of a case (of one rater when given), oldest first."""
    store = _as_store(db)
    if rater is None:
        rows = store.query("SELECT * FROM ratings WHERE patient_id = ? ORDER BY id", (patient_id,))
    else:
        rows = store.query("SELECT * FROM ratings WHERE patient_id = ? AND rater = ? ORDER BY id", (patient_id, rater))
    return [_rating(r) for r in rows]


def ratings_frame(db: Store | StrPath, all_history: bool = False) -> pd.DataFrame:
    """The ratings as a DataFrame with ``EXPORT_COLUMNS``: latest per (case, rater), or every row."""
    import pandas as pd

    store = _as_store(db)
    rows = store.query("SELECT * FROM ratings ORDER BY id") if all_history else store.query(_LATEST + " ORDER BY r.id")
    df = pd.DataFrame([{c: r[c] for c in EXPORT_COLUMNS} for r in rows], columns=list(EXPORT_COLUMNS))
    df = df.sort_values(["patient_id", "rater", "rated_at"], kind="stable", ignore_index=True)
    return df.astype({c: "string" for c in EXPORT_COLUMNS})


def export_ratings(db: Store | StrPath, out: StrPath, all_history: bool = False,
                   anonymize: bool = False) -> Path:
    """Write the ratings to ``.csv`` or ``.parquet`` (by suffix), atomically; see ``ratings_frame``.

    ``anonymize`` replaces rater names by ``rater_1``, ``rater_2``... in order of their first rating."""
    from etl.atomic import atomic_path

    target = Path(out)
    suffix = target.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise ValidationFailed(f"export file must end in .csv or .parquet, got {target.name!r}", str(target))
    df = ratings_frame(db, all_history)
    if anonymize:
        store = _as_store(db)
        order = [r["rater"] for r in store.query("SELECT rater, MIN(id) AS first FROM ratings GROUP BY rater ORDER BY first")]
        names = {name: f"rater_{i}" for i, name in enumerate(order, 1)}
        df["rater"] = df["rater"].map(names).astype("string")
    with atomic_path(target) as tmp:
        if suffix == ".csv":
            df.to_csv(tmp, index=False, lineterminator="\n")
        else:
            df.to_parquet(tmp, index=False, engine="pyarrow")
    return target


def read_ratings(path: StrPath) -> pd.DataFrame:
    """Ratings from a database or an export (.csv/.parquet), latest per (case, rater), ``EXPORT_COLUMNS``
    at least ``patient_id, rater, score``; scores checked."""
    import pandas as pd

    p = Path(path)
    if not p.is_file():
        raise InputUnreadable("no such file", str(p))
    suffix = p.suffix.lower()
    if suffix in (".csv", ".parquet"):
        try:
            df = pd.read_csv(p, dtype=str, keep_default_na=False) if suffix == ".csv" else pd.read_parquet(p)
        except Exception as exc:
            raise InputUnreadable(f"cannot read ratings table: {exc}", str(p)) from exc
        missing = [c for c in ("patient_id", "rater", "score") if c not in df.columns]
        if missing:
            raise InputUnreadable(f"ratings table lacks columns {missing}", str(p))
        df = df.astype({c: "string" for c in ("patient_id", "rater", "score")})
        df["score"] = df["score"].str.strip().str.lower()
        bad = df[~df["score"].isin(SCORES)]
        if len(bad):
            i = int(bad.index[0])
            raise ValidationFailed(f"score must be one of {', '.join(SCORES)}, got {bad['score'].iloc[0]!r}",
                                   f"{p} row {i} ({bad['patient_id'].iloc[0]})")
        if "rated_at" in df.columns:  # an export with history: keep the latest per (case, rater)
            df = df.sort_values("rated_at", kind="stable")
        return df.drop_duplicates(["patient_id", "rater"], keep="last").reset_index(drop=True)
    with open_store(p, create=False) as store:
        return ratings_frame(store)
