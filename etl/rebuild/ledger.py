"""The rebuild's stage ledger (``WORK/rebuild.ledger.json``) and the fingerprints it compares.

A stage is done when its last run succeeded with the same command and the same input fingerprints and its
outputs still have the fingerprints that run left. Fingerprints are cheap enough for a corpus of hundreds of
GB: a file is its size and sha256 (manifests, spreadsheets, tables: small), a directory tree is the sorted
list of every file's relative path, size and mtime (a stat per file, no reading). Temp files of atomic writes
(dot names, ``*.partial``/``*.old``), the download caches' ``tmp/`` and SQLite's ``-wal``/``-shm`` files are
not outputs and are left out. The ledger is rewritten atomically after every change, so a killed rebuild
leaves either the previous or the new ledger, never half of one.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from etl.atomic import write_text
from etl.errors import InputUnreadable

LEDGER_VERSION = 1
_SKIP_SUFFIXES = (".partial", ".old", ".tmp", "-wal", "-shm", "-journal")


def _skipped(name: str) -> bool:
    return name.startswith(".") or name.endswith(_SKIP_SUFFIXES)


from etl.hashing import sha256_file  # noqa: E402
from etl.types import StrPath


def fingerprint(path: StrPath, kind: str, ignore: tuple[str, ...] = ()) -> dict[str, Any] | None:
    """What a declared input or output looks like now; None when it does not exist.

    ``ignore``: relative-path globs of bookkeeping files a tree's readers may touch (a download cache's SQLite
    ledger is checkpointed whenever its last connection closes; its content is the objects)."""
    path = Path(path)
    try:
        if kind == "file":
            if not path.is_file():
                return None
            return {"size": path.stat().st_size, "sha256": sha256_file(path)}
        if not path.is_dir():
            return None
        h = hashlib.sha256()
        files = size = 0
        for root, dirnames, filenames in os.walk(path):
            rel_root = os.path.relpath(root, path)
            dirnames[:] = sorted(d for d in dirnames if not _skipped(d) and not (rel_root == "." and d == "tmp"))
            for name in sorted(filenames):
                if _skipped(name):
                    continue
                st = os.stat(os.path.join(root, name))
                rel = name if rel_root == "." else f"{rel_root}/{name}"
                if ignore and any(fnmatch.fnmatch(rel, g) for g in ignore):
                    continue
                h.update(f"{rel}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
                files += 1
                size += st.st_size
        return {"files": files, "bytes": size, "digest": h.hexdigest()}
    except OSError as exc:
        raise InputUnreadable(f"cannot read: {exc.strerror or exc}", str(path)) from exc


class Ledger:
    """Per stage: status, command fingerprint, inputs, outputs, cases, seconds (JSON, rewritten atomically)."""

    def __init__(self, path: Path, work: Path) -> None:
        self.path = path
        self.work = work
        self.stages: dict[str, dict[str, Any]] = {}
        if path.exists():
            try:
                doc = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise InputUnreadable(f"rebuild ledger is unreadable ({exc}); delete it to redo every stage",
                                      str(path)) from exc
            if not isinstance(doc, dict) or doc.get("version") != LEDGER_VERSION or not isinstance(doc.get("stages"), dict):
                raise InputUnreadable("not a rebuild ledger of this version; delete it to redo every stage", str(path))
            self.stages = doc["stages"]

    def key(self, path: StrPath) -> str:
        """Paths under the work folder are recorded relative to it, so a moved work folder still resumes."""
        p = Path(path)
        try:
            return p.relative_to(self.work).as_posix() or "."
        except ValueError:
            return str(p)

    def get(self, stage: str) -> dict[str, Any] | None:
        return self.stages.get(stage)

    def record(self, stage: str, entry: dict[str, Any]) -> None:
        self.stages[stage] = entry
        self.save()

    def save(self) -> None:
        doc = {"version": LEDGER_VERSION, "stages": self.stages}
        write_text(self.path, json.dumps(doc, indent=2, sort_keys=True) + "\n")
