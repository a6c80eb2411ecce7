"""Nothing half-written: every output goes to a temp path beside its target and is renamed into place."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from etl.types import StrPath

# mkstemp creates 0600 files; outputs get the permissions a plain open() would give them.
_UMASK = os.umask(0)
os.umask(_UMASK)
FILE_MODE = 0o666 & ~_UMASK


@contextlib.contextmanager
def atomic_path(target: StrPath) -> Iterator[Path]:
    """Yield a temp file path in the target's folder; rename it onto ``target`` if the block succeeds.

    The temp name starts with '.' and ends with '.tmp' so globbing for outputs never sees it.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if tmp.exists():
            os.chmod(tmp, FILE_MODE)
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_bytes(target: StrPath, data: bytes) -> Path:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return Path(target)


def write_text(target: StrPath, text: str) -> Path:
    return write_bytes(target, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_dir(target: StrPath, suffix: str = ".partial") -> Iterator[Path]:
    """Build a directory at ``<target><suffix>`` and swap it onto ``target`` only when the block succeeds.

    A failed or killed build leaves any previous ``target`` untouched; a stale ``.partial`` from an earlier
    killed run is cleared first. The swap is two renames (target -> ``.old``, partial -> target); a run
    killed between them leaves ``.old`` and no target, which the next call puts back before anything else.
    """
    target = Path(target)
    partial = target.with_name(target.name + suffix)
    old = target.with_name(target.name + ".old")
    recover_previous(target)
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    try:
        yield partial
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if target.exists():
        if old.exists():
            shutil.rmtree(old)
        os.replace(target, old)
    os.replace(partial, target)
    if old.exists():
        shutil.rmtree(old)


def recover_previous(target: StrPath) -> bool:
    """Put back ``<target>.old`` when a swap was killed between its two renames; True if it did."""
    target = Path(target)
    old = target.with_name(target.name + ".old")
    if old.exists() and not target.exists():
        os.replace(old, target)
        return True
    return False
