"""Download a Synapse folder tree (e.g. the MAMA-MIA project) into the verified cache with synapseclient.

The tree is walked with ``syn.getChildren`` (POST ``/entity/children``, paged); each file's metadata comes
from its entity bundle (``syn.restPOST(.../bundle2)``) and its bytes from ``syn.get(id, version=..,
downloadLocation=<scratch>)`` (file handle batch -> pre-signed URL -> GET with Range resume). What this
module adds to the client:

* md5 enforced: a mismatch is an error and the file is not kept (``syncFromSynapse`` only logs it);
* resume: a file whose (id, version) is in the ledger with its object on disk is skipped; a file whose
  md5 and size match an object already in the cache is linked without downloading;
* relative paths kept and checked (an entity name with ``/`` or ``..`` is refused);
* bounded: a body longer than the file handle's ``contentSize`` is cut off as it arrives and refused, the
  size is checked before the md5, and the free disk space before the download (``etl.extract.limits``);
* bounded retries (the client's defaults add up to tens of minutes) and per-request timeouts;
* the access token (``SYNAPSE_AUTH_TOKEN`` or the user's ``~/.synapseConfig``) is never printed, logged
  or stored: every message that leaves this module is scrubbed, and a log filter redacts it too.
"""

from __future__ import annotations

import contextlib
import fnmatch
import functools
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any

import requests

from etl.errors import ConfigError, EtlError, ExtractError
from etl.extract.cache import Cache, CacheUnusable, SynapseRecord
from etl.extract.limits import Limits
from etl.extract.progress_view import RunProgress
from etl.extract.outcome import RunResult, cancel_on_error
from etl.extract.retry import (
    Breaker,
    PermanentError,
    RetryPolicy,
    ServiceUnavailable,
    TransientError,
    call_with_retry,
    parse_retry_after,
)
from etl.interrupts import import_whole
from etl.types import StrPath

log = logging.getLogger("etl.extract.synapse")

DEFAULT_ENDPOINT = "https://repo-prod.prod.sagebase.org"
TOKEN_ENV = "SYNAPSE_AUTH_TOKEN"
FILE_TYPE = "org.sagebionetworks.repo.model.FileEntity"
CONTAINER_TYPES = ("org.sagebionetworks.repo.model.Folder", "org.sagebionetworks.repo.model.Project")


@dataclass(frozen=True)
class RemoteFile:
    syn_id: str
    version: int
    relpath: str


@dataclass
class FileOutcome:
    syn_id: str
    relpath: str
    status: str  # fetched | cached | linked | failed
    reason: str = ""
    bytes: int = 0
    seconds: float = 0.0
    attempts: int = 0
    skipped: bool = False  # not attempted because the service looked down

    def line(self) -> str:
        return f"{self.syn_id} {self.relpath}: {self.reason}"


@dataclass
class SynapseResult(RunResult):
    root_id: str = ""
    walk_failures: list[tuple[str, str]] = field(default_factory=list)

    def other_failures(self) -> list[tuple[str, str]]:
        return self.walk_failures


# ---------------------------------------------------------------------- secrets
class _Redactor(logging.Filter):
    def __init__(self, secrets_: list[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets_ if s]

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        clean = scrub(msg, self.secrets)
        if clean != msg:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[1] is not None:
            text = scrub(str(record.exc_info[1]), self.secrets)
            if text != str(record.exc_info[1]):
                record.exc_info = None
                record.exc_text = None
                record.msg = f"{record.msg} ({text})"
        return True


MIN_SECRET_LEN = 8  # real Synapse tokens are long JWTs; replacing a 1-char "token" would mangle every message


def scrub(text: str, secrets_: list[str]) -> str:
    for s in secrets_:
        if s and len(s) >= MIN_SECRET_LEN:
            text = text.replace(s, "***")
    return text


_CLIENT_LOGGERS = ("synapseclient", "synapseclient_default", "synapseclient_debug", "synapseclient_silent")


@contextlib.contextmanager
def _redacting(secrets_: list[str]) -> Iterator[None]:
    """Redact the secrets from every log record any handler emits while active; quiet the client's chatter.

    synapseclient logs through its own loggers with their own stdout/stderr handlers, so the filter goes on
    every handler that exists, not only on the root logger's.
    """
    import_whole("synapseclient")  # its import runs logging.config.dictConfig; do that before adjusting

    filt = _Redactor(secrets_)
    handlers: set[logging.Handler] = set(logging.getLogger().handlers)
    for lg in list(logging.root.manager.loggerDict.values()):
        if isinstance(lg, logging.Logger):
            handlers.update(lg.handlers)
    for h in handlers:
        h.addFilter(filt)
    # the client also attaches tqdm handlers to its logger while a download runs; filter at the loggers too
    client_loggers = [logging.getLogger(n) for n in _CLIENT_LOGGERS]
    for lg in client_loggers:
        lg.addFilter(filt)
    quiet = client_loggers
    saved = [lg.level for lg in quiet]
    if not logging.getLogger("synapseclient").isEnabledFor(logging.DEBUG):
        for lg in quiet:
            lg.setLevel(logging.WARNING)  # per-file "Downloaded to ..." lines reach stdout via tqdm otherwise
    try:
        yield
    finally:
        for h in handlers:
            h.removeFilter(filt)
        for lg in client_loggers:
            lg.removeFilter(filt)
        for lg, lvl in zip(quiet, saved):
            lg.setLevel(lvl)


@contextlib.contextmanager
def _short_client_retries(policy: RetryPolicy) -> Iterator[None]:
    """Bound synapseclient's own REST/download retries (its defaults retry for up to ~30 minutes)."""
    from synapseclient import client as sc
    from synapseclient.core.download import download_functions as df

    saved = (dict(sc.STANDARD_RETRY_PARAMS), dict(df.STANDARD_RETRY_PARAMS), dict(sc.STANDARD_RETRY_ASYNC_PARAMS))
    sync = {"retries": max(0, policy.attempts - 1), "wait": policy.base_delay, "max_wait": policy.max_delay,
            "back_off": policy.factor}  # fmt: skip
    # our own loop retries every call; the client's inner REST loop only gets one quick retry so that the two
    # do not multiply (5 x 5 attempts against a dead server); the download loop keeps its retries (it resumes)
    sc.STANDARD_RETRY_PARAMS.update({**sync, "retries": min(1, sync["retries"])})
    df.STANDARD_RETRY_PARAMS.update(sync)
    sc.STANDARD_RETRY_ASYNC_PARAMS.update(
        retry_base_wait=policy.base_delay, retry_max_back_off=policy.max_delay,
        retry_max_wait_before_failure=max(policy.max_delay * policy.attempts, policy.timeout * 2),
    )  # fmt: skip
    try:
        yield
    finally:
        for live, old in zip((sc.STANDARD_RETRY_PARAMS, df.STANDARD_RETRY_PARAMS, sc.STANDARD_RETRY_ASYNC_PARAMS), saved):
            live.clear()
            live.update(old)


@functools.lru_cache(maxsize=None)
def _overlong_error() -> type[Exception]:
    """``OverlongBody``: refused, and never retried by synapseclient.

    The client retries every download error except a full disk and an md5 mismatch, and a retry that made
    progress does not count against its limit: an endless body would be fetched again forever. So the
    error also is a ``SynapseMd5MismatchError`` (which the client gives up on at once); ``classify`` keeps it
    as the ``PermanentError`` it is."""
    from synapseclient.core.exceptions import SynapseMd5MismatchError

    class OverlongBody(PermanentError, SynapseMd5MismatchError):
        pass

    return OverlongBody


class _TimeoutSession(requests.Session):
    """requests.Session whose requests time out unless told otherwise (the client's file GET sets none).

    While ``body_limit`` is set (one file download of this worker's client), a streamed body longer than
    that is refused: from its Content-Length before reading, or at the first chunk past the limit."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self._timeout = timeout
        self.body_limit: int | None = None
        self.where = ""

    def request(self, method: str, url: str | bytes, *args: Any, **kw: Any) -> requests.Response:
        if kw.get("timeout") is None:
            kw["timeout"] = self._timeout
        resp = super().request(method, url, *args, **kw)
        limit = self.body_limit
        if limit is None or not kw.get("stream") or resp.status_code >= 300:
            return resp
        overlong = _overlong_error()
        try:
            announced = int(resp.headers.get("Content-Length", ""))
        except ValueError:
            announced = -1
        if announced > limit:
            resp.close()
            raise overlong(f"the server announces {announced} bytes, more than the file handle's contentSize "
                           f"{limit}; refused before download, nothing stored", self.where)  # fmt: skip
        where, chunks = self.where, resp.iter_content

        def bounded(chunk_size: int | None = 1, decode_unicode: bool = False) -> Iterator[str | bytes]:
            got = 0
            body: Iterator[str | bytes] = (chunks(chunk_size, decode_unicode=True) if decode_unicode
                                           else chunks(chunk_size))
            for chunk in body:
                got += len(chunk)
                if got > limit:
                    resp.close()
                    raise overlong(f"received more than the file handle's contentSize {limit} bytes; download "
                                   f"stopped, nothing stored", where)  # fmt: skip
                yield chunk

        # bound this one response (the client reads the body through iter_content); mypy refuses assigning to a
        # method, and a plain function to an overloaded one, so the ignore stays
        resp.iter_content = bounded  # type: ignore[method-assign, assignment]
        return resp


@functools.lru_cache(maxsize=None)
def _bounded_stream() -> type[Any]:
    """An httpx response body that refuses to yield more than ``limit`` bytes (httpx wants its own base)."""
    import httpx

    class BoundedStream(httpx.SyncByteStream):
        def __init__(self, inner: Any, limit: int, what: str, where: str) -> None:
            self.inner, self.limit, self.what, self.where = inner, limit, what, where

        def __iter__(self) -> Iterator[bytes]:
            got = 0
            for chunk in self.inner:
                got += len(chunk)
                if got > self.limit:
                    raise _overlong_error()(f"received more than {self.what}; download stopped, nothing stored",
                                            self.where)  # fmt: skip
                yield chunk

        def close(self) -> None:
            self.inner.close()

    return BoundedStream


def _storage_client(session: _TimeoutSession, timeout: float) -> Any:
    """The httpx client synapseclient uses for files over 8 MiB (ranged parts, read whole into memory),
    bounded by the same per-file limit as ``_TimeoutSession``: a part longer than the range asked for, or a
    ``Content-Range``/``Content-Length`` beyond the file handle's ``contentSize``, is refused."""
    import re

    import httpx

    def check(response: httpx.Response) -> None:
        limit, where = session.body_limit, session.where
        if limit is None or response.status_code >= 300:
            return
        overlong = _overlong_error()
        most, what = limit, f"the file handle's contentSize {limit} bytes"
        if response.status_code == 206:
            m = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+|\*)", response.headers.get("Content-Range", "").strip())
            if m is None:
                raise overlong("a ranged answer without a readable Content-Range; refused", where)
            if m.group(3) != "*" and int(m.group(3)) != limit:
                raise overlong(f"the server says the file has {m.group(3)} bytes, the file handle's contentSize is "
                               f"{limit}; refused, nothing stored", where)  # fmt: skip
            most, what = int(m.group(2)) - int(m.group(1)) + 1, f"the {int(m.group(2)) - int(m.group(1)) + 1}-byte range asked for"
        try:
            announced = int(response.headers.get("Content-Length", ""))
        except ValueError:
            announced = -1
        if announced > most:
            raise overlong(f"the server announces {announced} bytes, more than {what}; refused before download, "
                           f"nothing stored", where)  # fmt: skip
        response.stream = _bounded_stream()(response.stream, most, what, where)

    return httpx.Client(timeout=httpx.Timeout(timeout, pool=None), event_hooks={"response": [check]})


# ---------------------------------------------------------------------- client
def _endpoints(endpoint: str) -> dict[str, str]:
    base = endpoint.rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise ConfigError("Synapse endpoint must start with http:// or https://", endpoint)
    for suffix in ("/repo/v1", "/auth/v1", "/file/v1"):
        if base.endswith(suffix):
            base = base[: -len(suffix)]
    return {"repoEndpoint": f"{base}/repo/v1", "authEndpoint": f"{base}/auth/v1", "fileHandleEndpoint": f"{base}/file/v1"}


def classify(exc: BaseException, where: str, secrets_: list[str]) -> EtlError:
    """Map a synapseclient / transport exception onto Transient/Permanent, scrubbed of secrets."""
    from synapseclient.core import exceptions as sx

    text = scrub(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__, secrets_)[:300]
    if isinstance(exc, EtlError):
        if exc.where is None:
            exc.where = where
        return exc
    if isinstance(exc, sx.SynapseMd5MismatchError):
        return TransientError("md5 mismatch: the downloaded bytes differ from the file handle's md5", where)
    status = None
    found: BaseException | None = None
    link: BaseException | None = exc
    while link is not None and status is None:  # the client often wraps the HTTP error it got
        resp = getattr(link, "response", None)
        status = getattr(resp, "status_code", None) if resp is not None else None
        found = link
        link = link.__cause__ or link.__context__
    if isinstance(exc, (sx.SynapseAuthenticationError, sx.SynapseNoCredentialsError)) or status in (401, 403):
        return PermanentError(f"Synapse refused the credentials ({status or 'auth'}): check {TOKEN_ENV}", where)
    if status == 404 or isinstance(exc, sx.SynapseFileNotFoundError):
        return PermanentError(f"not found on Synapse: {text}", where)
    if status is not None and (status >= 500 or status == 429):
        retry_after = parse_retry_after(getattr(getattr(found, "response", None), "headers", {}).get("Retry-After"))
        return TransientError(f"HTTP {status} from Synapse", where, unavailable=True, retry_after=retry_after)
    if isinstance(exc, (requests.Timeout, TimeoutError)) or "timed out" in text.lower() or "timeout" in type(exc).__name__.lower():
        return TransientError("timed out", where, unavailable=True)
    if isinstance(exc, (requests.ConnectionError, ConnectionError, OSError)) or "Connection" in type(exc).__name__:
        for reason in ("Connection refused", "Connection reset", "Connection broken", "Name or service not known",
                       "RemoteDisconnected", "IncompleteRead"):  # fmt: skip
            if reason in text:
                return TransientError(f"connection failed: {reason}", where, unavailable=True)
        return TransientError(f"connection failed: {text}", where, unavailable=True)
    if isinstance(exc, ValueError) and "JSON" in type(exc).__name__ + text:  # 200 with an HTML page or cut JSON
        return TransientError(f"Synapse answered something that is not JSON ({text[:80]})", where, unavailable=True)
    if isinstance(exc, sx.SynapseHTTPError):
        return PermanentError(f"Synapse error: {text}", where)
    return TransientError(f"{type(exc).__name__}: {text}", where)


class SynapseExtractor:
    def __init__(
        self,
        cache: Cache,
        endpoint: str,
        policy: RetryPolicy,
        config_path: str | None = None,
        token: str | None = None,
        limits: Limits | None = None,
    ) -> None:
        self.cache = cache
        self.limits = limits or Limits()
        self.endpoint = endpoint.rstrip("/")
        self.policy = policy
        self.config_path = config_path
        self._token = token if token is not None else os.environ.get(TOKEN_ENV)
        self.secrets: list[str] = [self._token] if self._token else []
        self._local = threading.local()
        self._clients: list[Any] = []
        self._lock = threading.Lock()
        self.breaker = Breaker(f"Synapse at {self.endpoint}", policy.give_up_after)

    def client(self) -> Any:
        """One logged-in synapseclient per worker thread (the client is not thread-safe)."""
        syn = getattr(self._local, "syn", None)
        if syn is not None:
            return syn
        import synapseclient

        session = _TimeoutSession(self.policy.timeout)
        kwargs: dict[str, Any] = dict(
            **_endpoints(self.endpoint), skip_checks=True, silent=True, cache_client=False,
            cache_root_dir=str(self.cache.root / "synapseclient-cache"),
            requests_session=session, requests_session_storage=_storage_client(session, self.policy.timeout),
            http_timeout_seconds=max(1, int(round(self.policy.timeout))),
        )  # fmt: skip
        if self.config_path is not None:
            kwargs["configPath"] = self.config_path
        syn = synapseclient.Synapse(**kwargs)

        def login() -> None:
            try:
                syn.login(authToken=self._token, silent=True)
            except Exception as exc:  # the client raises many types; classify names the fault
                raise classify(exc, f"login at {self.endpoint}", self.secrets) from None

        call_with_retry(login, self.policy, "Synapse login")
        secret = getattr(syn.credentials, "secret", None)
        if secret and secret not in self.secrets:
            self.secrets.append(secret)  # a token found in the user's config file
        self._local.syn = syn
        self._local.session = session
        with self._lock:
            self._clients.append(syn)
        return syn

    # ------------------------------------------------------------------ walk
    def walk(self, root_id: str, include: list[str]) -> tuple[list[RemoteFile], list[tuple[str, str]]]:
        syn = self.client()
        failures: list[tuple[str, str]] = []
        root = self._rest(lambda: _json_object(syn.restGET(f"/entity/{root_id}"), ("concreteType", "name")), root_id)
        if root.get("concreteType") == FILE_TYPE:
            return [RemoteFile(root_id, int(root.get("versionNumber") or 1), _safe_name(root["name"], root_id))], failures
        files: list[RemoteFile] = []
        stack: list[tuple[str, str]] = [(root_id, "")]
        while stack:
            parent, prefix = stack.pop()
            try:
                kids = self._rest(lambda p=parent: [_json_object(k, ("id", "name", "type"))
                                                    for k in syn.getChildren(p, includeTypes=["folder", "file"])],
                                  parent)  # fmt: skip
            except EtlError as exc:
                failures.append((f"{parent} {prefix or '.'}", exc.what))
                continue
            for k in kids:
                try:
                    name = _safe_name(k["name"], k["id"])
                except EtlError as exc:
                    failures.append((f"{k['id']} {prefix}{k['name']}", exc.what))
                    continue
                rel = f"{prefix}{name}"
                if k.get("type") in CONTAINER_TYPES:
                    stack.append((k["id"], rel + "/"))
                elif k.get("type") == FILE_TYPE:
                    if not include or any(fnmatch.fnmatch(rel, g) for g in include):
                        files.append(RemoteFile(k["id"], int(k.get("versionNumber") or 1), rel))
        return sorted(files, key=lambda f: f.relpath), failures

    def _rest(self, fn: Any, where: str) -> Any:
        def once() -> Any:
            try:
                return fn()
            except Exception as exc:  # the client raises many types; classify names the fault
                raise classify(exc, where, self.secrets) from None

        return call_with_retry(once, self.policy, f"Synapse {where}")

    # ------------------------------------------------------------------ files
    def fetch(self, f: RemoteFile, root_id: str) -> FileOutcome:
        out = FileOutcome(f.syn_id, f.relpath, "cached")
        start = time.monotonic()
        done = self.cache.synapse_done(f.syn_id, f.version)
        if done is not None:
            out.bytes = done.size
            if done.relpath != f.relpath or done.root_id != root_id:
                self.cache.record_synapse(SynapseRecord(**{**done.__dict__, "relpath": f.relpath, "root_id": root_id,
                                                            "completed_at": ""}))  # fmt: skip
            return out
        attempts = 0

        def once() -> tuple[str, int]:
            nonlocal attempts
            attempts += 1
            return self._download_once(f, root_id)

        started = None
        try:
            started = self.breaker.check(f"{f.syn_id} {f.relpath}")
            out.status, out.bytes = call_with_retry(once, self.policy, f"{f.syn_id} {f.relpath}", breaker=self.breaker)
            self.breaker.record(None)
        except CacheUnusable:
            raise
        except EtlError as exc:
            out.status, out.reason = "failed", scrub(exc.what, self.secrets)
            out.skipped = isinstance(exc, ServiceUnavailable)
            self.breaker.record(exc, started)
        out.attempts = attempts
        out.seconds = time.monotonic() - start
        return out

    def _download_once(self, f: RemoteFile, root_id: str) -> tuple[str, int]:
        syn = self.client()
        where = f"{f.syn_id} {f.relpath}"
        body = json.dumps({"includeEntity": True, "includeFileHandles": True})
        try:
            bundle = _json_object(syn.restPOST(f"/entity/{f.syn_id}/version/{f.version}/bundle2", body=body), ("entity",))
            entity = _json_object(bundle["entity"], ())
            handles = [_json_object(h, ()) for h in bundle.get("fileHandles") or []]
        except Exception as exc:  # the client raises many types; classify names the fault
            raise classify(exc, where, self.secrets) from None
        handle_id = entity.get("dataFileHandleId")
        fh = next((h for h in handles if h.get("id") == handle_id), None)
        if fh is None:
            raise PermanentError("no download permission (no file handle in the entity bundle)", where)
        md5, size = (fh.get("contentMd5") or "").lower(), int(fh.get("contentSize") or 0)
        if not md5:
            raise PermanentError("Synapse reports no md5 for this file; refusing an unverifiable download", where)
        have = self.cache.find_by_md5(md5, size)
        if have is not None:
            self._record(f, root_id, have.sha256, have.size, have.md5)
            return "linked", have.size
        self.limits.ensure_free(self.cache.root, size, where)
        session: _TimeoutSession = self._local.session
        with self.cache.scratch(f.syn_id) as tmp:
            session.body_limit, session.where = size, where
            try:
                ent = syn.get(f.syn_id, version=f.version, downloadLocation=str(tmp), ifcollision="overwrite.local")
            except Exception as exc:  # the client raises many types; classify names the fault
                raise classify(exc, where, self.secrets) from None
            finally:
                session.body_limit = None
            path = getattr(ent, "path", None)
            if not path or not os.path.isfile(path):
                raise TransientError("the client reported no downloaded file", where)
            got = os.path.getsize(path)
            if got > size:  # before any hash: a body longer than announced is refused, not retried
                raise PermanentError(f"received {got} bytes, more than the file handle's contentSize {size}; "
                                     f"refused, nothing stored", where)  # fmt: skip
            if got < size:
                raise TransientError(f"received {got} of the file handle's contentSize {size} bytes", where)
            try:
                stored = self.cache.put_file(path, expect_md5=md5, where=where)
            except CacheUnusable:
                raise  # the cache cannot be written (full, read-only): no retry can help, stop the run
            except ExtractError as exc:  # md5 mismatch: the file is already deleted
                raise TransientError(exc.what, where) from None
        if stored.size != size:
            raise TransientError(f"size {stored.size} differs from the file handle's {size}", where)
        self._record(f, root_id, stored.sha256, stored.size, stored.md5)
        return "fetched", stored.size

    def _record(self, f: RemoteFile, root_id: str, sha: str, size: int, md5: str) -> None:
        self.cache.record_synapse(SynapseRecord(f.syn_id, f.version, root_id, f.relpath, sha, size, md5, self.endpoint))

    def close(self) -> None:
        for syn in self._clients:
            with contextlib.suppress(Exception):
                syn._requests_session.close()
                syn._requests_session_storage.close()


def _json_object(obj: Any, keys: tuple[str, ...]) -> dict[str, Any]:
    """``obj`` if it is a JSON object with ``keys``; otherwise the answer was not what Synapse sends (an HTML
    page answered with 200, a proxy's text) and a TransientError says so."""
    if isinstance(obj, dict) and all(k in obj for k in keys):
        return obj
    shown = " ".join(str(obj).split())[:60]
    raise TransientError(f"unexpected answer from Synapse ({type(obj).__name__}: {shown!r})", unavailable=True)


def _safe_name(name: str, syn_id: str) -> str:
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\x00" in name:
        raise PermanentError(f"unsafe entity name {name!r} (would escape the download folder)", syn_id)
    return name


def _fetch_with_progress(ex: SynapseExtractor, f: RemoteFile, root_id: str, prog: RunProgress) -> FileOutcome:
    prog.started(f.syn_id, f.relpath)  # in the worker: a display row only while the file is in flight
    return ex.fetch(f, root_id)


def extract_synapse(
    entity: str,
    cache_dir: StrPath,
    endpoint: str = DEFAULT_ENDPOINT,
    include: list[str] | None = None,
    jobs: int = 2,
    policy: RetryPolicy | None = None,
    config_path: str | None = None,
    token: str | None = None,
    limits: Limits | None = None,
) -> SynapseResult:
    """Fetch every file under ``entity`` (optionally only relative paths matching ``include`` globs)."""
    import re

    if not re.fullmatch(r"syn\d+", entity.strip()):
        raise ConfigError(f"not a Synapse id: {entity!r}", "--entity")
    entity = entity.strip()
    policy = policy or RetryPolicy()
    include = list(include or [])
    cache = Cache(cache_dir)
    result = SynapseResult(root_id=entity)
    start = time.monotonic()
    ex = SynapseExtractor(cache, endpoint, policy, config_path=config_path, token=token,
                          limits=limits or Limits.from_env())  # fmt: skip
    with cache.exclusive("extract synapse"), _redacting(ex.secrets), _short_client_retries(policy):
        try:
            if n := cache.clear_tmp():
                log.info("removed %d unfinished download(s) left by an earlier run", n)
            files, result.walk_failures = ex.walk(entity, include)
            log.info("%s: %d file(s) to check%s", entity, len(files), f" matching {include}" if include else "")
            with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool, RunProgress("Synapse files", len(files)) as prog:
                futs = {}
                for f in files:
                    futs[pool.submit(_fetch_with_progress, ex, f, entity, prog)] = f
                with cancel_on_error(pool):
                    for fut in as_completed(futs):
                        o = fut.result()
                        result.outcomes.append(o)
                        if o.status == "failed":
                            prog.finished(o.syn_id, f"{o.syn_id} {o.relpath}: FAILED: {o.reason}", failed=not o.skipped,
                                          quiet=True)  # fmt: skip
                        else:
                            prog.finished(o.syn_id, f"{o.syn_id} {o.relpath}: {o.status}, {o.bytes / 1e6:.2f} MB"
                                          + (f" in {o.seconds:.2f} s" if o.status == "fetched" else ""),
                                          quiet=o.status == "cached")  # fmt: skip
            result.gave_up = ex.breaker.tripped
        except EtlError as exc:
            raise type(exc)(scrub(exc.what, ex.secrets), exc.where) from None
        finally:
            ex.close()
    result.outcomes.sort(key=lambda o: o.relpath)
    result.seconds = time.monotonic() - start
    return result
