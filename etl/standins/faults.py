"""Fault knobs shared by the loopback stand-ins.

Each knob counts down: ``http500=3`` answers the first three matching requests with HTTP 500 and then
behaves. ``ALWAYS`` makes a fault permanent. ``targets`` restricts every fault to requests about the
given ids (series UIDs, patient ids, Synapse ids or file names); empty means every request.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, fields

ALWAYS = 10**9

KNOBS = {
    "http500": "answer the first k matching requests with HTTP 500",
    "drop_mid_body": "close the connection halfway through the first k payload bodies",
    "truncate_zip": "serve the first k zips cut short (with a Content-Length that matches the short body)",
    "wrong_md5": "advertise a wrong md5 for the first k payloads (md5hashes.csv / file handle contentMd5)",
    "slow_first_byte": "seconds to wait before the first byte of the first `slow_count` payload answers",
    "slow_count": "how many payload answers are slow (see slow_first_byte)",
    "zip_slip": "add an entry named ../<name> to the first k zips",
    "http503": "answer the first k matching requests with HTTP 503 (with Retry-After if retry_after > 0)",
    "http429": "answer the first k matching requests with HTTP 429 Too Many Requests (Retry-After: retry_after)",
    "retry_after": "seconds sent in the Retry-After header of http503/http429 answers (0: no header)",
    "html_200": "answer the first k matching requests with 200 and an HTML error page instead of the payload",
    "bad_json": "answer the first k JSON requests with 200 and malformed JSON",
    "empty_zip": "serve the first k zips with no entries at all",
    "duplicate_entry": "repeat the first DICOM entry of the first k zips under the same name",
    "extra_entries": "add non-DICOM files (LICENSE.txt, notes/readme.md) to the first k zips (harmless)",
    "nested_folder": "put every entry of the first k zips under a <SeriesInstanceUID>/ folder (harmless)",
    "missing_md5": "omit the md5 of the first k payloads (no md5hashes.csv / no contentMd5)",
    "zip_bomb": "pad the first DICOM entry of the first k zips with bomb_mb MB of zeros, deflated, with an honest "
                "central directory and a consistent md5hashes.csv (a ~1000:1 entry)",
    "zip_bomb_lying": "as zip_bomb, but the zip's directory and local header state the entry's original size",
    "bomb_mb": "megabytes of zero padding added by zip_bomb / zip_bomb_lying (default 64)",
    "oversize_series": "pad the first DICOM entry of the first k zips with incompressible bytes (the series' "
                       "reported size + 1 MiB), md5 consistent: an honest zip bigger than NBIA's FileSize",
    "overlong_content": "send the first k Synapse file bodies with extra bytes beyond the handle's contentSize",
    "no_content_length": "send the first k payload bodies without Content-Length (the body ends when the "
                         "connection closes), so a client can only bound them while reading",
}


_FLOAT_KNOBS = ("slow_first_byte", "retry_after", "bomb_mb")
HTML_ERROR_PAGE = (b"<!DOCTYPE html>\n<html><head><title>Service Unavailable</title></head>"
                   b"<body><h1>Down for maintenance</h1><p>Please try again later.</p></body></html>\n")


@dataclass
class Faults:
    http500: int = 0
    drop_mid_body: int = 0
    truncate_zip: int = 0
    wrong_md5: int = 0
    slow_first_byte: float = 0.0
    slow_count: int = 0
    zip_slip: int = 0
    http503: int = 0
    http429: int = 0
    retry_after: float = 0.0
    html_200: int = 0
    bad_json: int = 0
    empty_zip: int = 0
    duplicate_entry: int = 0
    extra_entries: int = 0
    nested_folder: int = 0
    missing_md5: int = 0
    zip_bomb: int = 0
    zip_bomb_lying: int = 0
    bomb_mb: float = 64.0
    oversize_series: int = 0
    overlong_content: int = 0
    no_content_length: int = 0
    targets: frozenset[str] = frozenset()
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    fired: dict[str, int] = field(default_factory=dict, compare=False)

    def applies(self, ids: set[str]) -> bool:
        return not self.targets or bool(self.targets & ids)

    def take(self, knob: str, ids: set[str]) -> bool:
        """Consume one occurrence of ``knob`` for a request about ``ids``; True if the fault fires."""
        if not self.applies(ids):
            return False
        count_attr = "slow_count" if knob == "slow_first_byte" else knob
        with self._lock:
            left = getattr(self, count_attr)
            if knob == "slow_first_byte" and self.slow_first_byte <= 0:
                return False
            if left <= 0:
                return False
            setattr(self, count_attr, left - 1)
            self.fired[knob] = self.fired.get(knob, 0) + 1
            return True

    @classmethod
    def parse(cls, specs: list[str], targets: list[str] | None = None) -> Faults:
        """From CLI strings like ``http500=3``, ``slow_first_byte=2.5``, ``zip_slip=always``."""
        f = cls(targets=frozenset(targets or ()))
        names = {x.name for x in fields(cls)} - {"targets", "_lock", "fired"}
        for spec in specs:
            key, sep, value = spec.partition("=")
            key = key.strip().replace("-", "_")
            if key not in names or not sep:
                raise ValueError(f"unknown fault {spec!r}; known: {', '.join(sorted(names))} (as name=value)")
            if value.strip().lower() == "always":
                num: float = ALWAYS
            else:
                num = float(value)
            setattr(f, key, num if key in _FLOAT_KNOBS else int(num))
        return f
