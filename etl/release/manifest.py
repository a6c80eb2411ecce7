"""SHA256SUMS: the checksum manifest every release ends with (``sha256sum -c`` compatible)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from etl.errors import InputUnreadable

MANIFEST = "SHA256SUMS"
_CHUNK = 1 << 20


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def release_files(root: Path) -> list[str]:
    """Every regular file under ``root`` as a POSIX relative path, sorted, except the manifest itself.

    Hidden temp files (``.name.tmp``) count too: a release must not carry leftovers.
    """
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in filenames:
            rel = Path(dirpath, name).relative_to(root).as_posix()
            if rel != MANIFEST:
                out.append(rel)
    return sorted(out)


def manifest_text(sums: dict[str, str]) -> str:
    return "".join(f"{digest}  {rel}\n" for rel, digest in sorted(sums.items()))


def write_manifest(root: Path, known: dict[str, str] | None = None) -> dict[str, str]:
    """Hash every file (reusing digests already computed while copying) and write SHA256SUMS."""
    from etl.atomic import write_text

    known = known or {}
    sums = {rel: known.get(rel) or sha256_file(root / rel) for rel in release_files(root)}
    write_text(root / MANIFEST, manifest_text(sums))
    return sums


def read_manifest(root: Path) -> dict[str, str]:
    path = Path(root) / MANIFEST
    try:
        text = path.read_text()
    except OSError as exc:
        raise InputUnreadable(f"cannot read checksum manifest: {exc.strerror or exc}", str(path)) from exc
    sums: dict[str, str] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        digest, sep, rel = line.partition("  ")
        if not sep or len(digest) != 64:
            raise InputUnreadable(f"malformed line {lineno}", f"{path}:{lineno}")
        sums[rel.lstrip("*")] = digest
    return sums
