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
        msg = _not_a_zip(path, exc)
        # an HTML page answered with 200 is a maintenance page or a proxy: the service, not this series
        raise TransientError(msg, where, unavailable=msg.startswith("server sent an HTML")) from exc
    with zf:
        infos = zf.infolist()
        seen: dict[str, int] = {}
        for info in infos:
            norm = safe_member_name(info.filename)
            if norm is None:
                raise PermanentError(f"unsafe zip entry name {info.filename!r} (zip-slip); archive rejected", where)
            if not info.is_dir():
                seen[norm] = seen.get(norm, 0) + 1
        dups = sorted(n for n, k in seen.items() if k > 1)
        if dups:  # one entry would silently overwrite the other on extraction
            raise PermanentError(f"zip has {seen[dups[0]]} entries named {dups[0]!r}"
                                 + (f" (and {len(dups) - 1} more duplicate names)" if len(dups) > 1 else "")
                                 + "; archive rejected", where)  # fmt: skip
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
            # a .dcm entry must be DICOM; any other entry is DICOM if it carries the Part 10 marker
            # (mirrors that drop the extension), else it is an extra (licence, readme) that is not stored
            if not name.lower().endswith(".dcm") and not _has_dicm_marker(zf, info, where):
                ignored.append(name)
                continue
            sha, md5, size, head = _hash_member(zf, info, where)
            if size != info.file_size:
                raise TransientError(f"entry {name} is {size} bytes, zip header says {info.file_size}", where)
            if len(head) < 132 or head[128:132] != b"DICM":
                raise TransientError(f"entry {name} is not a DICOM Part 10 file (no DICM marker)", where)
            members.append(Member(name, info, sha, md5, size))
        if not members:
            extra = f" (entries: {', '.join(ignored[:3])}{', ...' if len(ignored) > 3 else ''})" if ignored else " (empty archive)"
            raise TransientError(f"zip holds no DICOM files{extra}", where)
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
        return CheckedZip(_unwrap(members), md5s is not None, ignored)


def _unwrap(members: list[Member]) -> list[Member]:
    """Drop a folder that wraps every DICOM entry (``<uid>/1-01.dcm`` -> ``1-01.dcm``), so a series is
    stored under the same names whichever way the server packed it; deeper structure is kept."""
    import dataclasses

    while members and all("/" in m.name for m in members):
        top = {m.name.split("/", 1)[0] for m in members}
        if len(top) != 1:
            break
        members = [dataclasses.replace(m, name=m.name.split("/", 1)[1]) for m in members]
    return members


def _has_dicm_marker(zf: zipfile.ZipFile, info: zipfile.ZipInfo, where: str) -> bool:
    if info.file_size < 132:
        return False
    try:
        with zf.open(info) as fh:
            return fh.read(132)[128:132] == b"DICM"
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise TransientError(f"zip entry {info.filename} is damaged ({exc})", where) from exc


def _not_a_zip(path: Path, exc: BaseException) -> str:
    """Say what arrived instead of a zip: an HTML/JSON error page answered with 200, nothing, or a cut zip."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(512)
        size = path.stat().st_size
    except OSError:
        return f"downloaded zip is unreadable ({exc})"
    if size == 0:
        return "server sent an empty body instead of a zip"
    text = head.lstrip().lower()
    if text.startswith((b"<!doctype", b"<html", b"<?xml", b"<")):
        import re

        title = re.search(rb"<title>(.*?)</title>", head, re.I | re.S)
        hint = f" titled {title.group(1).decode('utf-8', 'replace').strip()[:60]!r}" if title else ""
        return f"server sent an HTML/XML page{hint} ({size} bytes) instead of a zip"
    if text.startswith((b"{", b"[")):
        return f"server sent JSON ({size} bytes) instead of a zip: {head[:80].decode('utf-8', 'replace')!r}"
    if not head.startswith(b"PK"):
        return f"server sent {size} bytes that are not a zip (starting {head[:16]!r})"
    return f"downloaded zip is corrupt or truncated ({exc})"


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
