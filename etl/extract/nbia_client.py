"""tcia_utils.nbia, pointed at a chosen NBIA base URL and given timeouts and honest errors.

tcia_utils builds every URL through ``nbia.setApiUrl`` (which only knows the public hosts) and calls the
module-level ``requests.get/post`` without a timeout; it logs HTTP errors and returns ``None`` (metadata)
or counts a failed series and returns normally (``downloadSeries``). ``patched_nbia`` replaces exactly
those two names inside ``tcia_utils.nbia`` for the duration of a run:

* ``setApiUrl`` returns our base URL (a mirror, or a loopback stand-in in tests);
* ``requests`` becomes a ``Transport`` that adds a per-request timeout and turns timeouts, resets and HTTP
  errors into ``TransientError`` / ``PermanentError``. Metadata calls let those propagate; where
  tcia_utils swallows them (``downloadSeries``), the transport remembers the failure per series so the
  caller can still report the real reason.

The HTTP itself is still done by tcia_utils' own functions.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests

from etl.extract.retry import PermanentError, TransientError, parse_retry_after
from etl.interrupts import import_whole

log = logging.getLogger("etl.extract.nbia")

# What tcia_utils' own setApiUrl("getSeries", "nbia") returns: the public NBIA v4 REST endpoint.
DEFAULT_API_URL = "https://nbia.cancerimagingarchive.net/nbia-api/services/v4/"

_RETRY_STATUS = {408, 429, 500, 502, 503, 504}
_patch_lock = threading.Lock()


def normalize_api_url(url: str) -> str:
    url = url.strip()
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"NBIA API URL must start with http:// or https://: {url!r}")
    return url if url.endswith("/") else url + "/"


class Transport:
    """Stands in for the ``requests`` module inside ``tcia_utils.nbia`` (get, post, exceptions)."""

    exceptions = requests.exceptions

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._local = threading.local()
        self._failures: dict[str, Exception] = {}
        self._lock = threading.Lock()
        self.requests_made = 0
        self._watchers: dict[str, Callable[[int, int | None], None]] = {}
        self._limits: dict[str, int] = {}

    @contextlib.contextmanager
    def watch(self, series_uid: str, on_bytes: Callable[[int, int | None], None]) -> Iterator[None]:
        """Report ``(bytes so far, Content-Length or None)`` while this series' body arrives.

        tcia_utils downloads in its own worker threads and reads the whole zip into memory, so the body is
        streamed here (keyed by the series in the URL) and handed to it complete: the client is unchanged
        and the curator sees a byte bar per series."""
        with self._lock:
            self._watchers[series_uid] = on_bytes
        try:
            yield
        finally:
            with self._lock:
                self._watchers.pop(series_uid, None)

    @contextlib.contextmanager
    def body_limit(self, series_uid: str, max_bytes: int | None) -> Iterator[None]:
        """Refuse this series' zip body once it passes ``max_bytes`` (None: no limit).

        tcia_utils holds the whole body in memory and writes it to disk, so the bound has to act while
        the bytes arrive: a Content-Length above it is refused before reading, a body without one is cut
        at the first chunk past it."""
        if max_bytes is None:
            yield
            return
        with self._lock:
            self._limits[series_uid] = max_bytes
        try:
            yield
        finally:
            with self._lock:
                self._limits.pop(series_uid, None)

    def _session(self) -> requests.Session:
        s = getattr(self._local, "session", None)
        if s is None:
            s = requests.Session()
            self._local.session = s
        return s

    def get(self, url: str, params: dict[str, Any] | None = None, **kw: Any) -> requests.Response:
        return self._call("GET", url, params=params, **kw)

    def post(self, url: str, data: Any = None, **kw: Any) -> requests.Response:
        return self._call("POST", url, data=data, **kw)

    def _call(self, method: str, url: str, **kw: Any) -> requests.Response:
        kw.pop("timeout", None)
        endpoint = urlsplit(url).path.rsplit("/", 1)[-1]
        key = _series_key(url, kw)
        where = f"NBIA {endpoint}" + (f" series {key}" if key else "")
        with self._lock:
            self.requests_made += 1
        err: Exception
        self._local.last = None
        with self._lock:
            on_bytes = self._watchers.get(key) if key else None
            limit = self._limits.get(key) if key else None
        try:
            if on_bytes is None and limit is None:
                resp = self._session().request(method, url, timeout=self.timeout, **kw)
            else:
                resp = self._session().request(method, url, timeout=self.timeout, stream=True, **kw)
                if resp.status_code < 400:
                    _read_body(resp, on_bytes or _no_progress, limit, where)
        except PermanentError as exc:  # the body passed its limit
            err = exc
        except requests.Timeout:
            err = TransientError(f"no answer within {self.timeout:g} s (timeout)", where, unavailable=True)
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
            err = TransientError(f"connection failed: {_short(exc)}", where, unavailable=True)
        except requests.RequestException as exc:
            err = PermanentError(f"request failed: {_short(exc)}", where)
        else:
            if resp.status_code < 400:
                self._local.last = resp
                return resp
            reason = f"HTTP {resp.status_code} {resp.reason or ''}".strip()
            if resp.status_code in _RETRY_STATUS:
                retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                err = TransientError(reason, where, unavailable=True, retry_after=retry_after)
            else:
                err = PermanentError(reason, where)
        if key:
            with self._lock:
                self._failures[key] = err
        raise err

    def last_answer_problem(self) -> str | None:
        """Why this thread's last successful answer was not usable JSON (tcia_utils then returns None).

        None when the answer was empty (NBIA's way of saying "no results") or valid JSON.
        """
        resp = getattr(self._local, "last", None)
        if resp is None or not resp.content.strip():
            return None
        try:
            resp.json()
        except ValueError:
            ctype = resp.headers.get("Content-Type", "?").split(";")[0]
            return f"answered 200 with {ctype} that is not valid JSON: {_snippet(resp.content)}"
        return None

    def take_failure(self, series_uid: str) -> Exception | None:
        """The error the last request about this series raised inside tcia_utils, if any (then forgotten)."""
        with self._lock:
            return self._failures.pop(series_uid, None)


def _no_progress(got: int, total: int | None) -> None:
    pass


def _read_body(
    resp: requests.Response, on_bytes: Callable[[int, int | None], None], limit: int | None = None, where: str = ""
) -> None:
    """Read a streamed body in chunks (reporting progress) and keep it as the response's content.

    With ``limit``, a body longer than that many bytes is refused (``PermanentError``) as soon as it is
    known to be: from its Content-Length, or from the first chunk past the limit."""
    try:
        total: int | None = int(resp.headers.get("Content-Length", ""))
    except ValueError:
        total = None
    if limit is not None and total is not None and total > limit:
        resp.close()
        raise PermanentError(f"the server announces a {total}-byte zip, more than the {limit} bytes the series "
                             f"may take by NBIA's size for it; refused before download", where)  # fmt: skip
    chunks, got = [], 0
    on_bytes(0, total)
    for chunk in resp.iter_content(chunk_size=1 << 20):
        chunks.append(chunk)
        got += len(chunk)
        if limit is not None and got > limit:
            resp.close()
            raise PermanentError(f"the zip body passed {limit} bytes, more than the series may take by NBIA's "
                                 f"size for it; download stopped, nothing stored", where)  # fmt: skip
        on_bytes(got, total)
    resp._content = b"".join(chunks)  # what requests itself does for a non-streamed body
    resp._content_consumed = True


def _series_key(url: str, kw: dict[str, Any]) -> str:
    params = kw.get("params") or {}
    if isinstance(params, dict) and params.get("SeriesInstanceUID"):
        return str(params["SeriesInstanceUID"])
    q = parse_qs(urlsplit(url).query)
    return q.get("SeriesInstanceUID", [""])[0]


def _snippet(data: bytes, n: int = 60) -> str:
    """The start of a body, printable and on one line (an HTML error page, truncated JSON...)."""
    text = data[:n * 2].decode("utf-8", "replace")
    text = " ".join(text.split())
    return repr(text[:n] + ("..." if len(text) > n or len(data) > n * 2 else ""))


def _short(exc: BaseException) -> str:
    text = str(exc)
    # urllib3 nests the useful part deep inside; keep the innermost reason readable
    for marker in ("IncompleteRead", "Connection broken", "Connection reset", "Connection refused", "RemoteDisconnected"):
        if marker in text:
            return marker + (": " + text.split(marker, 1)[1].strip(" :'\")(")[:80] if marker == "IncompleteRead" else "")
    return text[:160]


@contextlib.contextmanager
def patched_nbia(api_url: str, timeout: float) -> Iterator[tuple[Any, Transport]]:
    """Yield ``(tcia_utils.nbia, transport)`` with the base URL and transport installed.

    Only one patched session may be active per process at a time (the patch is module-global).
    """
    base = normalize_api_url(api_url)
    if not _patch_lock.acquire(blocking=False):
        raise RuntimeError("another NBIA extraction is already running in this process")
    try:
        nbia: Any = import_whole("tcia_utils.nbia")  # imports duckdb: a Ctrl-C inside that crashes the interpreter

        transport = Transport(timeout)
        saved = (nbia.setApiUrl, nbia.requests)
        tcia_log = logging.getLogger("tcia_utils.nbia")
        saved_level = tcia_log.level
        # tcia_utils logs every failure it swallows at ERROR; we retry those and report the final outcome
        # ourselves, so its log is only useful when debugging (-v).
        if logging.getLogger("tcia_utils").getEffectiveLevel() > logging.DEBUG:
            tcia_log.setLevel(logging.CRITICAL + 1)

        def set_api_url(endpoint: str, api_url: str = "nbia") -> str:  # same signature as tcia_utils
            return base

        nbia.setApiUrl = set_api_url
        nbia.requests = transport
        try:
            yield nbia, transport
        finally:
            nbia.setApiUrl, nbia.requests = saved
            tcia_log.setLevel(saved_level)
    finally:
        _patch_lock.release()
