"""The one sha256 of a file: checksums in SHA256SUMS, provenance inputs, ledgers, rated and corrected masks
and export manifests must agree byte for byte, so every stage computes it the same way, in 1 MiB reads."""

from __future__ import annotations

import hashlib

from etl.types import StrPath

_CHUNK = 1 << 20


def sha256_file(path: StrPath) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()
