"""One gzip member made of fixed-size, independently deflated chunks, fed as a stream.

Why a stream: a phase is 60-250 MB. Holding it whole, then its compressed chunks, then their join costs
three fresh allocations of that size per phase, and on a VM the page faults of fresh memory were a third
of a conversion's CPU. Fed through one reused 4 MiB buffer, a converting worker's memory stays flat and
its pages stay warm.

Why the bytes never change: chunk boundaries are fixed offsets of the raw stream (every ``CHUNK`` bytes,
counted from the first byte written), each chunk is raw deflate ended by a sync flush (the last one by a
finish), and the gzip header has no name and mtime 0. So the output does not depend on how the caller cut
its writes: ``gzip_bytes`` of whole buffers and a phase streamed slice by slice give the same file.

Why one thread: ISA-L deflating two chunks at once in threads of one process gave different (valid)
compressed bytes from run to run here (measured: up to 21 of 240 files, with small chunks; the old
chunk-threaded writer did the same), and a release's checksums must not depend on thread timing. Cases
run in parallel as processes (``--jobs``, ``etl.runner``), each deflating on its own core.
"""

from __future__ import annotations

import io
import struct
from typing import BinaryIO, Protocol

CHUNK = 1 << 22  # 4 MiB of raw data per deflate chunk (fixed: part of the output's definition)
GZIP_HEADER = b"\x1f\x8b\x08\x00" + b"\x00\x00\x00\x00" + b"\x00\xff"  # no name, mtime 0, OS unknown

try:  # fast deflate; the pure-zlib fallback gives valid (different) bytes, just slower
    from isal import isal_zlib as _zlib

    BACKEND = "isal"
    DEFAULT_LEVEL = 1  # isal levels 0-3
except ImportError:  # pragma: no cover - exercised only where isal is missing
    import zlib as _zlib  # type: ignore[no-redef]

    BACKEND = "zlib"
    DEFAULT_LEVEL = 1


class ReadsInto(Protocol):
    """A seekable binary file that fills a buffer in place (``open(path, "rb", buffering=0)``)."""

    def seek(self, offset: int, whence: int = 0, /) -> int: ...

    def readinto(self, buffer: memoryview, /) -> int | None: ...


class ChunkedGzipWriter:
    """Write one deterministic gzip member to ``fh`` from any sequence of writes (see the module docstring).

    Use as a context manager (the trailer is written on a clean exit only) or call ``close``.
    """

    def __init__(self, fh: BinaryIO, level: int | None = None) -> None:
        self.fh = fh
        self.level = DEFAULT_LEVEL if level is None else level
        self.crc = 0
        self.total = 0
        self._buf = bytearray(CHUNK)
        self._fill = 0
        self._closed = False
        fh.write(GZIP_HEADER)

    def write(self, data: bytes | bytearray | memoryview, borrow: bool = False) -> None:
        """Append ``data``. With ``borrow``, whole chunks of it are deflated where they lie instead of being
        copied into the chunk buffer (``data`` is only read, during this call)."""
        mv = memoryview(data).cast("B")
        self.total += len(mv)
        while len(mv):
            self._flush_full()
            if borrow and self._fill == 0 and len(mv) > CHUNK:  # not the last chunk: more data follows
                self._deflate(mv[:CHUNK], last=False)
                mv = mv[CHUNK:]
                continue
            n = min(CHUNK - self._fill, len(mv))
            self._buf[self._fill:self._fill + n] = mv[:n]
            self._fill += n
            mv = mv[n:]

    def read_from(self, fh: ReadsInto, offset: int, n: int) -> int:
        """Append ``n`` bytes of the raw file ``fh`` from ``offset``, read straight into the chunk buffer (no
        intermediate copy); returns how many bytes the file had (fewer than ``n`` = truncated)."""
        fh.seek(offset)
        done = 0
        while done < n:
            self._flush_full()
            k = min(CHUNK - self._fill, n - done)
            got = fh.readinto(memoryview(self._buf)[self._fill:self._fill + k]) or 0
            self._fill += got
            self.total += got
            done += got
            if got < k:
                break
        return done

    def _flush_full(self) -> None:
        """More data is coming, so a full chunk buffer is not the last chunk: deflate it and start over."""
        if self._fill == CHUNK:
            self._deflate(memoryview(self._buf), last=False)
            self._fill = 0

    def _deflate(self, chunk: memoryview, last: bool) -> None:
        self.crc = _zlib.crc32(chunk, self.crc)
        c = _zlib.compressobj(self.level, _zlib.DEFLATED, -15)
        self.fh.write(c.compress(chunk))
        self.fh.write(c.flush(_zlib.Z_FINISH if last else _zlib.Z_SYNC_FLUSH))

    def close(self) -> None:
        """Deflate what is left (the last chunk, empty for an empty stream, finishes it), then the trailer."""
        if self._closed:
            return
        self._closed = True
        self._deflate(memoryview(self._buf)[:self._fill], last=True)
        self.fh.write(struct.pack("<II", self.crc & 0xFFFFFFFF, self.total & 0xFFFFFFFF))

    def __enter__(self) -> ChunkedGzipWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.close()


def gzip_bytes(parts: list[bytes | memoryview], level: int | None = None) -> bytes:
    """One gzip member of the concatenated ``parts``; deterministic for a given backend and level."""
    out = io.BytesIO()
    with ChunkedGzipWriter(out, level) as gz:
        for p in parts:
            gz.write(p, borrow=True)
    return out.getvalue()
