"""SHA256SUMS: the checksum manifest every release ends with (``sha256sum -c`` compatible)."""

from __future__ import annotations

import os
from pathlib import Path

from etl.contracts import MANIFEST
from etl.errors import InputUnreadable


from etl.hashing import sha256_file  # noqa: E402,F401  (the one file hash; imported from here by older callers)


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


def seal(root: Path, known: dict[str, str] | None = None) -> dict[str, str]:
    """Step 5 of ``release build``, the checksums: SHA256SUMS over every file, then every file readable by
    all (temp-file writes are private, 0600; a release is for reading). Returns the listed files' digests."""
    final = write_manifest(root, known)
    for rel in [*final, MANIFEST]:
        (root / rel).chmod(0o644)
    return final


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


def load_manifest(root: Path) -> tuple[dict[str, str], list[tuple[int, str]]]:
    """The one SHA256SUMS reader: entries and bad lines of ``root/SHA256SUMS`` (an unreadable file raises).

    ``read_manifest`` refuses on the first bad line; ``release verify`` lists them all."""
    path = Path(root) / MANIFEST
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputUnreadable(f"cannot read checksum manifest: {getattr(exc, 'strerror', None) or exc}", str(path)) from exc
    return parse_manifest(text)


def read_manifest(root: Path) -> dict[str, str]:
    """The entries of ``root/SHA256SUMS``; a malformed line is an error (``load_manifest`` lists them all)."""
    sums, bad = load_manifest(root)
    if bad:
        lineno, what = bad[0]
        raise InputUnreadable(f"{what}" + (f" (and {len(bad) - 1} more bad line(s))" if len(bad) > 1 else ""),
                              f"{Path(root) / MANIFEST}:{lineno}")
    return sums
