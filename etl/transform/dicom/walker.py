"""A small explicit-VR little-endian element walker: the inventory's header tags without a full parse.

Scanners and TCIA deliver plain explicit-VR little-endian files; a full pydicom parse of 120-200 files per
phase costs more than the conversion itself, so the inventory reads only the tags in ``WANTED`` and the
position of PixelData. Anything the walker does not handle (implicit VR, big endian, no preamble,
encapsulated pixel data, a file truncated inside the header) returns None and pydicom reads the file.
``tests/imaging/test_img_walker.py`` holds it to pydicom's values on every generated file and on pydicom's
own test files; ``benchmarks/headers.py`` measures what it saves.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_LONG_VR = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
EXPLICIT_LE = "1.2.840.10008.1.2.1"
WANTED = {  # tag -> (keyword, kind)
    0x0020000D: ("StudyInstanceUID", "str"), 0x0020000E: ("SeriesInstanceUID", "str"),
    0x00200011: ("SeriesNumber", "str"), 0x00280010: ("Rows", "us"), 0x00280011: ("Columns", "us"),
    0x00200037: ("ImageOrientationPatient", "multi"), 0x00200032: ("ImagePositionPatient", "multi"),
    0x00280030: ("PixelSpacing", "multi"), 0x00281053: ("RescaleSlope", "str"),
    0x00281052: ("RescaleIntercept", "str"), 0x00280100: ("BitsAllocated", "us"),
    0x00280103: ("PixelRepresentation", "us"), 0x00280002: ("SamplesPerPixel", "us"),
    0x00280008: ("NumberOfFrames", "str"), 0x00200100: ("TemporalPositionIdentifier", "str"),
    0x00200012: ("AcquisitionNumber", "str"), 0x00181060: ("TriggerTime", "str"),
    0x0008002A: ("AcquisitionDateTime", "str"), 0x00080022: ("AcquisitionDate", "str"),
    0x00080032: ("AcquisitionTime", "str"), 0x00080023: ("ContentDate", "str"), 0x00080033: ("ContentTime", "str"),
    0x00080021: ("SeriesDate", "str"), 0x00080031: ("SeriesTime", "str"),
    0x00080020: ("StudyDate", "str"), 0x00080030: ("StudyTime", "str"), 0x00080018: ("SOPInstanceUID", "str"),
    0x00100020: ("PatientID", "str"), 0x00080008: ("ImageType", "multi"), 0x00280101: ("BitsStored", "us"),
}
_HEAD = 16384


class _Fallback(Exception):
    """The walker met something it does not handle; pydicom reads the file instead."""


def _skip_undefined(buf: bytes, pos: int, end_tag: int) -> int:
    """Position after the delimiter ``end_tag`` of an undefined-length sequence or item (explicit VR LE)."""
    while True:
        if pos + 8 > len(buf):
            raise _Fallback
        group, elem = struct.unpack_from("<HH", buf, pos)
        tag = (group << 16) | elem
        if tag == end_tag:
            return pos + 8
        if group == 0xFFFE:  # item (or item delimiter inside a sequence)
            length = struct.unpack_from("<I", buf, pos + 4)[0]
            pos += 8
            if tag == 0xFFFEE000 and length == 0xFFFFFFFF:
                pos = _skip_undefined(buf, pos, 0xFFFEE00D)
            elif tag == 0xFFFEE000:
                pos += length
            continue
        vr = buf[pos + 4:pos + 6]
        if vr in _LONG_VR:
            length = struct.unpack_from("<I", buf, pos + 8)[0]
            pos += 12
        elif vr.isalpha() and vr.isupper():
            length = struct.unpack_from("<H", buf, pos + 6)[0]
            pos += 8
        else:
            raise _Fallback
        if length == 0xFFFFFFFF:
            pos = _skip_undefined(buf, pos, 0xFFFEE0DD)
        else:
            pos += length


# SpecificCharacterSet values whose text the walker decodes itself (pydicom's names for them); any other
# character set with non-ASCII bytes in a wanted tag (ISO 2022 escapes, GB18030...) is left to pydicom.
_CHARSETS = {"": "latin-1", "ISO_IR 6": "latin-1", "ISO_IR 100": "latin-1", "ISO_IR 192": "utf-8"}


def _decode(raw: bytes, charset: str) -> str:
    if raw.isascii() and b"\x1b" not in raw:
        return raw.decode("ascii")
    codecs = {_CHARSETS.get(c.strip()) for c in charset.split("\\")}
    if len(codecs) != 1 or None in codecs:  # ISO 2022 code extensions (escape sequences), other character sets
        raise _Fallback
    return raw.decode(codecs.pop() or "latin-1")


@dataclass(frozen=True)
class Walked:
    """What the walker read: ``WANTED`` values by keyword (text stripped of padding, multi-values split on
    backslash, US as int; absent or empty = missing) and where the pixel data is."""

    values: dict[str, Any]
    transfer_syntax: str
    pixel_start: int  # file offset of the first pixel byte
    pixel_length: int  # PixelData value length as the element says
    file_size: int


def walk(path: Path) -> Walked | None:
    """Walk an explicit-VR little-endian file up to PixelData; None = not handled here (use pydicom)."""
    try:
        with open(path, "rb") as fh:
            buf = fh.read(_HEAD)
            size = os.fstat(fh.fileno()).st_size
            if len(buf) < 132 or buf[128:132] != b"DICM":
                return None
            values: dict[str, Any] = {}
            pos = 132
            tsyntax = None
            charset = ""
            while True:
                if pos + 12 > len(buf):
                    if len(buf) >= size:
                        return None  # no pixel data before the end: let pydicom decide what this is
                    buf += fh.read(max(_HEAD, len(buf)))
                    continue
                group, elem = struct.unpack_from("<HH", buf, pos)
                tag = (group << 16) | elem
                if group != 0x0002 and tsyntax != EXPLICIT_LE:
                    return None
                vr = buf[pos + 4:pos + 6]
                if vr in _LONG_VR:
                    length = struct.unpack_from("<I", buf, pos + 8)[0]
                    start = pos + 12
                elif vr.isalpha() and vr.isupper():
                    length = struct.unpack_from("<H", buf, pos + 6)[0]
                    start = pos + 8
                else:
                    return None
                if tag == 0x7FE00010:
                    if length == 0xFFFFFFFF:
                        return None  # encapsulated (compressed) pixel data
                    break
                if length == 0xFFFFFFFF:
                    while True:
                        try:
                            pos = _skip_undefined(buf, start, 0xFFFEE0DD)
                            break
                        except _Fallback:
                            if len(buf) >= size:
                                return None
                            buf += fh.read(max(_HEAD, len(buf)))
                    continue
                end = start + length
                while end > len(buf) and len(buf) < size:
                    buf += fh.read(max(_HEAD, end - len(buf)))
                if end > len(buf):
                    return None  # truncated inside the header: pydicom gives the detailed error
                if tag == 0x00020010:
                    tsyntax = buf[start:end].rstrip(b"\x00 ").decode("ascii", "replace")
                elif tag == 0x00080005:
                    charset = buf[start:end].rstrip(b"\x00 ").decode("ascii", "replace").strip()
                elif tag in WANTED:
                    name, kind = WANTED[tag]
                    raw = buf[start:end]
                    if kind == "us":
                        values[name] = struct.unpack_from("<H", raw)[0] if len(raw) >= 2 else None
                    else:
                        text = _decode(raw.rstrip(b"\x00 "), charset).strip()
                        if kind == "multi":
                            values[name] = [t.strip() for t in text.split("\\")] if text else None
                        else:
                            values[name] = text or None
                pos = end
    except (OSError, struct.error, UnicodeDecodeError, _Fallback):
        return None
    return Walked(values, tsyntax or EXPLICIT_LE, pos + 12, length, size)
