"""Checks on an NBIA series zip before anything from it enters the cache.

The archive is inspected as a whole first (structure, CRCs, safe names, DICOM count against ImageCount,
md5 of every file against ``md5hashes.csv`` when the server sent one); only a series that passes every
check is stored. A failure names the series and the offending entry.

Before a single entry is decompressed, the central directory is held against the limits
(``etl.extract.limits``): the entries' total size must agree with NBIA's size for the series and no entry
may expand beyond the compression-ratio cap. The directory can lie, so every read afterwards goes through
``_BoundedEntry``: it stops one byte past the size the directory states and refuses the archive if that
byte exists, and it checks the CRC itself.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import io
import posixpath
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from etl.extract.limits import Limits
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


def check_directory(infos: list[zipfile.ZipInfo], reported_bytes: int | None, limits: Limits, where: str) -> int:
    """Hold the central directory against the limits before any entry is read; the entries' total size.

    ``reported_bytes`` is NBIA's size for the series (None: not reported, only the ratio cap applies)."""
    files = [i for i in infos if not i.is_dir()]
    for info in files:
        if (why := limits.ratio_problem(info.filename, info.file_size, info.compress_size)) is not None:
            raise PermanentError(f"{why}; archive refused (zip bomb?), nothing stored", where)
    total = sum(i.file_size for i in files)
    if (why := limits.size_problem(total, reported_bytes)) is not None:
        raise PermanentError(f"{why}; archive refused, nothing stored", where)
    return total


def check_series_zip(
    path: Path,
    series_uid: str,
    image_count: int | None,
    md5_offered: bool,
    reported_bytes: int | None = None,
    limits: Limits | None = None,
) -> CheckedZip:
    """Open and verify a downloaded series zip; raise TransientError/PermanentError naming what is wrong."""
    where = f"series {series_uid}"
    limits = limits or Limits()
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
        check_directory(infos, reported_bytes, limits, where)
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
        with _BoundedEntry(zf, info, where) as fh:
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
        with _BoundedEntry(zf, info, where) as fh:
            return fh.read_all()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:  # bad CRC, truncated data
        raise TransientError(f"zip entry {info.filename} is damaged ({exc})", where) from exc


def _hash_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, where: str) -> tuple[str, str, int, bytes]:
    sha, md5, size, head = hashlib.sha256(), hashlib.md5(usedforsecurity=False), 0, b""
    try:
        with _BoundedEntry(zf, info, where) as fh:  # size and CRC checked when the entry is fully read
            while chunk := fh.read(_CHUNK):
                if len(head) < 132:
                    head += chunk[: 132 - len(head)]
                sha.update(chunk)
                md5.update(chunk)
                size += len(chunk)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise TransientError(f"zip entry {info.filename} is damaged ({exc})", where) from exc
    return sha.hexdigest(), md5.hexdigest(), size, head


def extract_member(zf: zipfile.ZipFile, member: Member, target: Path, where: str = "") -> None:
    """Write one checked member to ``target`` (a temp path inside the cache), never more than its size."""
    with _BoundedEntry(zf, member.info, where or member.name) as src, open(target, "wb") as dst:
        while chunk := src.read(_CHUNK):
            dst.write(chunk)


class _BoundedEntry:
    """Read one zip entry, never more than one byte beyond the size its directory entry states.

    zipfile trusts the central directory: it stops at the stated size and then reports a CRC error, which
    looks like a damaged download (and would be retried). Here the entry is opened with room for one more
    byte and no CRC of its own, so a lying directory is caught as such (``PermanentError``, not retried),
    and the CRC is checked here once the entry ends where the directory says it does.
    """

    def __init__(self, zf: zipfile.ZipFile, info: zipfile.ZipInfo, where: str) -> None:
        self.info, self.where = info, where
        probe = copy.copy(info)
        probe.file_size = info.file_size + 1
        del probe.CRC  # zipfile skips its own CRC check for an entry without one
        self._fh = zf.open(probe)
        self._got = 0
        self._crc = 0

    def __enter__(self) -> _BoundedEntry:
        return self

    def __exit__(self, *exc: object) -> None:
        self._fh.close()

    def read(self, n: int) -> bytes:
        data = self._fh.read(n)
        self._got += len(data)
        if self._got > self.info.file_size:
            raise PermanentError(
                f"entry {self.info.filename} holds more than the {self.info.file_size} bytes the zip directory "
                f"states (lying central directory); archive refused, nothing stored", self.where)  # fmt: skip
        self._crc = zlib.crc32(data, self._crc)
        if not data or len(data) < n:
            self._finish()
        return data

    def read_all(self) -> bytes:
        parts = []
        while chunk := self.read(_CHUNK):
            parts.append(chunk)
        return b"".join(parts)

    def _finish(self) -> None:
        if self._got < self.info.file_size:
            raise zipfile.BadZipFile(f"entry ends after {self._got} of the {self.info.file_size} bytes stated")
        if self._crc != self.info.CRC:
            raise zipfile.BadZipFile(f"Bad CRC-32 for file {self.info.filename!r}")
