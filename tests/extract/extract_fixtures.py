"""Fixtures shared by the download tests (tests/extract, tests/hostile): fast retry limits, a token-only
Synapse configuration and a one-minute bound on every test (a hung download must fail fast); and
``put_bytes``, which stores bytes in a cache the way a download does (temp file, then ``Cache.put_file``)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from extract_dicomgen import TOKEN

from etl.extract.cache import Cache, StoredObject


@pytest.fixture
def fast():
    from etl.extract.retry import RetryPolicy

    return RetryPolicy.fast()


@pytest.fixture
def no_user_synapse_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A config path that does not exist, so only SYNAPSE_AUTH_TOKEN can supply a token."""
    monkeypatch.setenv("SYNAPSE_AUTH_TOKEN", TOKEN)
    return str(tmp_path / "no-synapse-config")


def bound_each_test(items: list[pytest.Item], here: Path, seconds: int = 60) -> None:
    """Give every test under ``here`` a timeout unless it sets its own."""
    for item in items:
        if here in Path(str(item.fspath)).parents and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(seconds))


def put_bytes(cache: Cache, data: bytes) -> StoredObject:
    """Store ``data`` as an object of ``cache`` (written to a temp file in the cache, then moved in)."""
    fd, name = tempfile.mkstemp(prefix=".obj.", suffix=".tmp", dir=cache.tmp_root)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    return cache.put_file(name)
