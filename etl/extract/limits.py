"""How much a download may occupy: the series' reported size, the compression-ratio cap, free disk space.

A broken mirror or a hostile server can send a small zip that expands to hundreds of megabytes (a DICOM
padded with zeros, md5 manifest consistent), or a body far longer than the file it claims to be. Every
figure a download may reach is therefore fixed *before* the bytes arrive, from what the catalogue says:

* a TCIA series' DICOM files together must agree with NBIA's size for the series (``getSeries`` FileSize or
  ``getSeriesSize`` TotalSizeInBytes) within ``size_tolerance`` (relative) or ``size_slack`` (absolute,
  for the small extras a zip carries: ``md5hashes.csv``, a licence), whichever is larger;
* no zip entry may expand more than ``max_ratio``:1. Measured deflate ratios of real DICOM (see
  docs/extract.md): MR files 1.1-1.9:1, the seeded synthetic series 2.1-2.6:1, the most compressible file
  among pydicom's 45 test files 42:1 (a flat RGB screen capture). A zero-padded file reaches ~1000:1
  (deflate's ceiling is 1032:1). The default 100 is 2.4x the most compressible real file seen and 10x
  below a padding bomb; entries under ``ratio_floor`` bytes are exempt (they cannot amplify much);
* the free space of the cache's filesystem must hold the download plus ``disk_margin`` before a byte of it
  is written; otherwise the run stops with one line naming the cache (``CacheFull``).

Each value can be set per run through the API (``Limits(...)``) or the environment
(``MAMAMIA_EXTRACT_MAX_RATIO``, ``MAMAMIA_EXTRACT_SIZE_TOLERANCE``, ``MAMAMIA_EXTRACT_SIZE_SLACK_KB``,
``MAMAMIA_EXTRACT_DISK_MARGIN_MB``).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from etl.errors import ConfigError
from etl.extract.cache import CacheUnusable

MB = 1 << 20

ENV = {
    "max_ratio": "MAMAMIA_EXTRACT_MAX_RATIO",
    "size_tolerance": "MAMAMIA_EXTRACT_SIZE_TOLERANCE",
    "size_slack": "MAMAMIA_EXTRACT_SIZE_SLACK_KB",
    "disk_margin": "MAMAMIA_EXTRACT_DISK_MARGIN_MB",
}
_ENV_UNIT = {"size_slack": 1024, "disk_margin": MB}


class CacheFull(CacheUnusable):
    """The cache's filesystem cannot hold the next download (plus the margin): nothing else can succeed."""


def disk_free(path: Path) -> int:
    """Bytes available to this user on the filesystem holding ``path``."""
    return shutil.disk_usage(path).free


@dataclass(frozen=True)
class Limits:
    """Bounds applied to every TCIA series and Synapse file of a run (see the module docstring)."""

    size_tolerance: float = 0.05
    size_slack: int = 64 * 1024
    max_ratio: float = 100.0
    ratio_floor: int = 1 * MB
    disk_margin: int = 256 * MB
    free_space: Callable[[Path], int] = field(default=disk_free, compare=False)

    def __post_init__(self) -> None:
        if not (self.size_tolerance >= 0 and self.size_slack >= 0 and self.disk_margin >= 0):
            raise ConfigError("extract limits must be >= 0", "limits")
        if not self.max_ratio >= 1:
            raise ConfigError(f"the compression-ratio cap must be >= 1, got {self.max_ratio:g}", "limits")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Limits:
        """Defaults, then ``MAMAMIA_EXTRACT_*`` variables, then explicit ``overrides``."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}  # field name -> value (float, int or callable), checked by __post_init__
        for name, var in ENV.items():
            text = env.get(var, "").strip()
            if not text:
                continue
            try:
                num = float(text)
            except ValueError:
                raise ConfigError(f"{var} must be a number, got {text!r}", var) from None
            if num < 0:
                raise ConfigError(f"{var} must be >= 0, got {text!r}", var)
            values[name] = int(num * _ENV_UNIT[name]) if name in _ENV_UNIT else num
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    # ------------------------------------------------------------------ series size
    def slack_for(self, reported: int) -> int:
        """How far a series' DICOM bytes may stray from the reported size."""
        return max(int(reported * self.size_tolerance), self.size_slack)

    def max_series_bytes(self, reported: int | None) -> int | None:
        """The most uncompressed bytes a series reported at ``reported`` bytes may hold (None: unknown)."""
        return None if reported is None else reported + self.slack_for(reported)

    def size_problem(self, total: int, reported: int | None) -> str | None:
        """Why ``total`` bytes do not agree with NBIA's ``reported`` size, or None when they do."""
        if reported is None:
            return None
        slack = self.slack_for(reported)
        if abs(total - reported) <= slack:
            return None
        side = "more" if total > reported else "less"
        return (f"zip entries expand to {total} bytes, {abs(total - reported)} bytes {side} than the {reported} "
                f"bytes NBIA reports for the series (tolerance {slack} bytes)")  # fmt: skip

    def ratio_problem(self, name: str, size: int, compressed: int) -> str | None:
        """Why one zip entry's expansion is refused (a zip bomb), or None."""
        if size <= self.ratio_floor:
            return None
        ratio = size / compressed if compressed > 0 else float("inf")
        if ratio <= self.max_ratio:
            return None
        return (f"entry {name} expands {ratio:.0f}:1 ({compressed} -> {size} bytes), above the "
                f"{self.max_ratio:g}:1 cap for DICOM")  # fmt: skip

    # ------------------------------------------------------------------ disk
    def ensure_free(self, cache_root: Path, need: int, what: str) -> None:
        """Raise ``CacheFull`` naming the cache unless ``need`` bytes plus the margin are free there."""
        try:
            free = self.free_space(cache_root)
        except OSError as exc:
            raise CacheUnusable(f"cannot read the free space: {exc.strerror or exc}", str(cache_root)) from None
        if free < need + self.disk_margin:
            raise CacheFull(
                f"not enough free disk space for {what}: needs {_mb(need)} + {_mb(self.disk_margin)} margin, "
                f"{_mb(free)} free; free some space or use another cache, then rerun to resume",
                str(cache_root),
            )


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n} bytes"


__all__ = ["CacheFull", "Limits", "disk_free"]
