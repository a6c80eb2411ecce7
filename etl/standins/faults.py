"""Fault knobs shared by the loopback stand-ins.

Each knob counts down: ``http500=3`` answers the first three matching requests with HTTP 500 and then
behaves. ``ALWAYS`` makes a fault permanent. ``targets`` restricts every fault to requests about the
given ids (series UIDs, patient ids, Synapse ids or file names); empty means every request.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, fields

ALWAYS = 10**9

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
