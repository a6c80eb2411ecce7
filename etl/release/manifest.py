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


_HEX64 = frozenset("0123456789abcdef")


def parse_manifest(text: str) -> tuple[dict[str, str], list[tuple[int, str]]]:
    """Entries of a SHA256SUMS text and its bad lines as (line number, what is wrong); every line is read."""
    sums: dict[str, str] = {}
    bad: list[tuple[int, str]] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        digest, sep, rel = line.partition("  ")
        if not sep:
            digest, sep, rel = line.partition(" *")  # sha256sum's binary-mode marker
        rel = rel.lstrip("*")
        if not sep or not rel:
            bad.append((lineno, "malformed line (expected '<sha256>  <path>')"))
        elif len(digest) != 64 or not set(digest.lower()) <= _HEX64:
            bad.append((lineno, f"malformed checksum {digest[:70]!r} for {rel} (expected 64 hex digits)"))
        elif rel.startswith("/") or ".." in rel.split("/"):
            bad.append((lineno, f"path {rel!r} points outside the release"))
        elif rel in sums:
            bad.append((lineno, f"{rel} is listed twice"))
        else:
            sums[rel] = digest.lower()
    return sums, bad


def read_manifest(root: Path) -> dict[str, str]:
    """The entries of ``root/SHA256SUMS``; a malformed line is an error (``parse_manifest`` lists them all)."""
    path = Path(root) / MANIFEST
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputUnreadable(f"cannot read checksum manifest: {getattr(exc, 'strerror', None) or exc}", str(path)) from exc
    sums, bad = parse_manifest(text)
    if bad:
        lineno, what = bad[0]
        raise InputUnreadable(f"{what}" + (f" (and {len(bad) - 1} more bad line(s))" if len(bad) > 1 else ""),
                              f"{path}:{lineno}")
    return sums
