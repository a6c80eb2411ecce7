"""Checks on an NBIA series zip before anything from it enters the cache.

The archive is inspected as a whole first (structure, CRCs, safe names, DICOM count against ImageCount,
md5 of every file against ``md5hashes.csv`` when the server sent one); only a series that passes every
check is stored. A failure names the series and the offending entry.
"""

from __future__ import annotations

import csv
import hashlib
import io
import posixpath
import zipfile
from dataclasses import dataclass
from pathlib import Path

from etl.extract.retry import PermanentError, TransientError

MD5_MANIFEST = "md5hashes.csv"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Member:
    """One DICOM file of the archive, hashed while checking."""

    name: str  # safe relative posix path inside the series folder
    info: zipfile.ZipInfo
    sha256: str
    md5: str
    size: int


@dataclass(frozen=True)
class CheckedZip:
    members: list[Member]
    md5_checked: bool
    ignored: list[str]  # non-DICOM entries (e.g. a licence text) that are not stored


def safe_member_name(name: str) -> str | None:
    """The normalized relative path of a zip entry, or None if it could escape the target folder."""
    if not name or "\x00" in name or "\\" in name:
        return None
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return None
    parts = name.split("/")
    if any(p == ".." for p in parts):
        return None
    norm = posixpath.normpath(name)
    if norm in (".", "") or norm.startswith("../"):
        return None
    return norm


def _read_md5_manifest(data: bytes, where: str) -> dict[str, str]:
    try:
        rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise TransientError(f"unreadable {MD5_MANIFEST}: {exc}", where) from exc
    out: dict[str, str] = {}
    for i, row in enumerate(rows):
        if len(row) < 2:
            continue
        name, digest = row[0].strip(), row[1].strip().lower()
        if i == 0 and not all(c in "0123456789abcdef" for c in digest):
            continue  # header (Filename,MD5Hash)
        out[name] = digest
    return out


def check_series_zip(path: Path, series_uid: str, image_count: int | None, md5_offered: bool) -> CheckedZip:
    """Open and verify a downloaded series zip; raise TransientError/PermanentError naming what is wrong."""
    where = f"series {series_uid}"
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise TransientError(f"downloaded zip is corrupt or truncated ({exc})", where) from exc
    with zf:
        infos = zf.infolist()
        for info in infos:
            if safe_member_name(info.filename) is None:
                raise PermanentError(f"unsafe zip entry name {info.filename!r} (zip-slip); archive rejected", where)
        md5s: dict[str, str] | None = None
        names = {safe_member_name(i.filename): i for i in infos if not i.is_dir()}
        manifest_info = next((i for n, i in names.items() if n and posixpath.basename(n) == MD5_MANIFEST), None)
        if manifest_info is not None:
            md5s = _read_md5_manifest(_read_member(zf, manifest_info, where), where)
        members: list[Member] = []
        ignored: list[str] = []
        for name, info in sorted(names.items(), key=lambda kv: kv[0] or ""):
            assert name is not None
            if info is manifest_info:
                continue
            if not name.lower().endswith(".dcm"):
                ignored.append(name)
                continue
            sha, md5, size, head = _hash_member(zf, info, where)
            if size != info.file_size:
                raise TransientError(f"entry {name} is {size} bytes, zip header says {info.file_size}", where)
            if len(head) < 132 or head[128:132] != b"DICM":
                raise TransientError(f"entry {name} is not a DICOM Part 10 file (no DICM marker)", where)
            members.append(Member(name, info, sha, md5, size))
        if not members:
            raise TransientError("zip holds no DICOM files", where)
        if image_count is not None and len(members) != image_count:
            raise TransientError(f"zip holds {len(members)} DICOM files, NBIA ImageCount is {image_count}", where)
        if md5s is not None:
            by_base = {posixpath.basename(k): v for k, v in md5s.items()}
            for m in members:
                want = md5s.get(m.name) or by_base.get(posixpath.basename(m.name))
                if want is None:
                    raise TransientError(f"{MD5_MANIFEST} has no entry for {m.name}", where)
                if want != m.md5:
                    raise TransientError(f"md5 mismatch for {m.name}: got {m.md5}, {MD5_MANIFEST} says {want}", where)
        elif md5_offered:
            raise TransientError(f"the MD5 endpoint sent no {MD5_MANIFEST}", where)
        return CheckedZip(members, md5s is not None, ignored)


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, where: str) -> bytes:
    try:
        return zf.read(info)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:  # bad CRC, truncated data
        raise TransientError(f"zip entry {info.filename} is damaged ({exc})", where) from exc


def _hash_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, where: str) -> tuple[str, str, int, bytes]:
    sha, md5, size, head = hashlib.sha256(), hashlib.md5(usedforsecurity=False), 0, b""
    try:
        with zf.open(info) as fh:  # CRC is checked by zipfile when the entry is fully read
            while chunk := fh.read(_CHUNK):
                if len(head) < 132:
                    head += chunk[: 132 - len(head)]
                sha.update(chunk)
                md5.update(chunk)
                size += len(chunk)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise TransientError(f"zip entry {info.filename} is damaged ({exc})", where) from exc
    return sha.hexdigest(), md5.hexdigest(), size, head


def extract_member(zf: zipfile.ZipFile, member: Member, target: Path) -> None:
    """Write one checked member to ``target`` (a temp path inside the cache)."""
    with zf.open(member.info) as src, open(target, "wb") as dst:
        while chunk := src.read(_CHUNK):
            dst.write(chunk)
