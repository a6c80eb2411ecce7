"""The SQLite ratings store: history kept, latest counts, stale ratings, exports, refusals."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pandas as pd
import pytest

from etl.errors import InputUnreadable, ValidationFailed
from etl.review.store import (EXPORT_COLUMNS, add_rating, export_ratings, history, latest_by_rater, latest_ratings,
                              open_store, read_ratings)


def test_history_kept_latest_counts(tmp_path: Path) -> None:
    db = open_store(tmp_path / "r.sqlite")
    add_rating(db, "DUKE_001", "alice", "good", mask_sha256="a" * 64)
    add_rating(db, "DUKE_001", "bob", "poor", comment="leaks into the chest wall")
    add_rating(db, "DUKE_001", "alice", "Acceptable", comment="  second look ")
    add_rating(db, "DUKE_002", "alice", "missed")
    assert latest_ratings(db) == {"DUKE_001": "acceptable", "DUKE_002": "missed"}  # most recent of any rater
    per = latest_by_rater(db)
    assert {k: r.score for k, r in per.items()} == {("DUKE_001", "alice"): "acceptable", ("DUKE_001", "bob"): "poor",
                                                     ("DUKE_002", "alice"): "missed"}
    assert per[("DUKE_001", "alice")].comment == "second look"
    assert [r.score for r in history(db, "DUKE_001", "alice")] == ["good", "acceptable"]
    assert len(history(db, "DUKE_001")) == 3
    assert latest_ratings(tmp_path / "r.sqlite") == latest_ratings(db)  # a path works too
    mode = sqlite3.connect(tmp_path / "r.sqlite").execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_stale_rating() -> None:
    from etl.review.store import Rating

    r = Rating(1, "DUKE_001", "alice", "good", "", "2026-01-01T00:00:00Z", "a" * 64, "0.1.0")
    assert r.is_stale("b" * 64) and not r.is_stale("a" * 64)
    assert not Rating(2, "DUKE_001", "alice", "good", "", "x", None, "0.1.0").is_stale("b" * 64)


def test_refusals(tmp_path: Path) -> None:
    db = open_store(tmp_path / "r.sqlite")
    with pytest.raises(ValidationFailed, match="score must be one of"):
        add_rating(db, "DUKE_001", "alice", "excellent")
    with pytest.raises(ValidationFailed, match="rater"):
        add_rating(db, "DUKE_001", "  ", "good")
    with pytest.raises(ValidationFailed, match="comment"):
        add_rating(db, "DUKE_001", "alice", "good", comment="x" * 5000)
    not_db = tmp_path / "notes.sqlite"
    not_db.write_text("not a database, just text " * 100)
    with pytest.raises(InputUnreadable, match="not a ratings database"):
        open_store(not_db)
    with pytest.raises(InputUnreadable, match="no ratings database"):
        open_store(tmp_path / "missing.sqlite", create=False)
    assert latest_ratings(db) == {}


def test_export_csv_parquet_and_read_back(tmp_path: Path) -> None:
    db = open_store(tmp_path / "r.sqlite")
    add_rating(db, "DUKE_001", "alice", "good", mask_sha256="a" * 64)
    add_rating(db, "DUKE_001", "alice", "poor", comment='quoted "text", with comma', mask_sha256="a" * 64)
    add_rating(db, "ISPY1_1001", "bob", "missed")
    csv = export_ratings(db, tmp_path / "quality_scores.csv")
    df = pd.read_csv(csv, dtype=str, keep_default_na=False)
    assert list(df.columns) == list(EXPORT_COLUMNS)
    assert df[["patient_id", "rater", "score", "comment"]].values.tolist() == [
        ["DUKE_001", "alice", "poor", 'quoted "text", with comma'], ["ISPY1_1001", "bob", "missed", ""]]
    assert df["mask_sha256"].tolist() == ["a" * 64, ""]
    assert all(v.endswith("Z") for v in df["rated_at"])
    pq = export_ratings(db, tmp_path / "q.parquet", all_history=True, anonymize=True)
    dfp = pd.read_parquet(pq)
    assert len(dfp) == 3 and sorted(set(dfp["rater"])) == ["rater_1", "rater_2"]
    assert read_ratings(csv)[["patient_id", "score"]].values.tolist() == [["DUKE_001", "poor"], ["ISPY1_1001", "missed"]]
    assert read_ratings(pq)["score"].tolist() == ["poor", "missed"]  # history export: the latest per (case, rater)
    with pytest.raises(ValidationFailed, match=r"\.csv or \.parquet"):
        export_ratings(db, tmp_path / "q.xlsx")
    bad = tmp_path / "bad.csv"
    bad.write_text("patient_id,rater,score\nDUKE_001,alice,excellent\n")
    with pytest.raises(ValidationFailed, match="row 0"):
        read_ratings(bad)


def test_threads_and_two_connections_never_lock(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite"
    stores = [open_store(path), open_store(path)]  # two "servers" on one file
    errors: list[BaseException] = []

    def rate(k: int) -> None:
        try:
            for i in range(50):
                add_rating(stores[k % 2], f"CASE_{i:03d}", f"rater{k}", "good")
        except BaseException as exc:  # pragma: no cover - the assertion below reports it
            errors.append(exc)

    threads = [threading.Thread(target=rate, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(latest_by_rater(path)) == 200
