"""Download the manifest's DICOM series from NBIA (TCIA) into the verified cache.

Per case: ``nbia.getSeries(Collection, PatientID, Modality)`` lists the series (a Duke case has one series
per DCE phase, so by default all of them are fetched; ``series_only`` fetches just the manifest's
``tcia_series_uid``). Per series: ``nbia.downloadSeries(..., as_zip=True)`` fetches the zip from
``getImageWithMD5Hash`` (or ``getImage?NewFileNames=Yes``), the archive is checked as a whole
(``zipcheck``), its DICOM files are stored by content and the series is entered in the ledger in one
transaction. NBIA's size for the series bounds everything (``etl.extract.limits``): the zip body while it
arrives, the zip's directory before an entry is read, every entry while it is read, and the free disk
space checked before the download and again before the files are written. A series already in the
ledger with all its objects on disk is not fetched again; one that was interrupted has no ledger row and
is redone. Every failure is collected and reported at the end.
"""

from __future__ import annotations

import logging
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from etl.errors import EtlError
from etl.extract.cache import Cache, CacheUnusable, SeriesFile, SeriesRecord
from etl.extract.limits import Limits
from etl.caselist import ManifestCase, cases_to_fetch
from etl.extract.outcome import RunResult, cancel_on_error
from etl.extract.nbia_client import DEFAULT_API_URL, Transport, normalize_api_url, patched_nbia
from etl.extract.progress_view import RunProgress
from etl.extract.retry import Breaker, PermanentError, ServiceUnavailable, RetryPolicy, TransientError, call_with_retry
from etl.extract.zipcheck import check_series_zip, extract_member
from etl.types import StrPath

log = logging.getLogger("etl.extract.tcia")


@dataclass(frozen=True)
class SeriesTask:
    case: ManifestCase
    series_uid: str
    meta: dict[str, Any]


@dataclass
class SeriesOutcome:
    patient_id: str
    series_uid: str
    status: str  # fetched | cached | failed
    reason: str = ""
    files: int = 0
    bytes: int = 0
    seconds: float = 0.0
    attempts: int = 0
    skipped: bool = False  # not attempted because the service looked down

    def line(self) -> str:
        return f"{self.patient_id} series {self.series_uid}: {self.reason}"


@dataclass
class TciaResult(RunResult):
    excluded: dict[str, str] = field(default_factory=dict)
    lookup_failures: list[tuple[str, str]] = field(default_factory=list)  # (patient_id, reason)
    requests: int = 0

    def other_failures(self) -> list[tuple[str, str]]:
        return [(pid, f"series lookup failed: {why}") for pid, why in self.lookup_failures]


def _int(v: Any) -> int | None:
    try:
        return int(float(v))
    except (TypeError, ValueError):
        return None


def _str(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    return str(v)


class TciaExtractor:
    """One extraction run; use ``extract_tcia`` unless you need the pieces."""

    def __init__(
        self,
        cache: Cache,
        nbia: Any,
        transport: Transport,
        api_url: str,
        policy: RetryPolicy,
        md5: bool = True,
        modality: str = "MR",
        sleep: Any = time.sleep,
        limits: Limits | None = None,
    ) -> None:
        self.cache = cache
        self.limits = limits or Limits()
        self.nbia = nbia
        self.transport = transport
        self.api_url = api_url
        self.policy = policy
        self.md5 = md5
        self.modality = modality
        self.sleep = sleep
        self.breaker = Breaker(f"NBIA at {api_url}", policy.give_up_after)
        self._collections: set[str] | None = None
        self._collections_lock = threading.Lock()

    # ---------------------------------------------------------------- lookup
    def lookup(self, case: ManifestCase, series_only: bool) -> list[SeriesTask]:
        """The series to fetch for one case, with NBIA's metadata (ImageCount...)."""
        started = self.breaker.check(case.patient_id)
        try:
            tasks = self._lookup(case, series_only)
        except EtlError as exc:
            self.breaker.record(exc, started)
            raise
        self.breaker.record(None)
        return tasks

    def _lookup(self, case: ManifestCase, series_only: bool) -> list[SeriesTask]:
        if series_only:
            if not case.tcia_series_uid:
                raise PermanentError("manifest row has no tcia_series_uid (needed with --series-only)", case.patient_id)
            rows = self._get_series(series_uid=case.tcia_series_uid)
            rows = [r for r in rows if r.get("SeriesInstanceUID") == case.tcia_series_uid]
            if not rows:
                raise PermanentError(f"NBIA does not list series {case.tcia_series_uid}", case.patient_id)
        else:
            rows = self._get_series(collection=case.tcia_collection, patient=case.tcia_patient_id)
            if not rows:
                raise PermanentError(
                    f"NBIA lists no {self.modality or 'any'} series for patient {case.tcia_patient_id} "
                    f"in {case.tcia_collection}{self._collection_hint(case.tcia_collection)}",
                    case.patient_id,
                )
            if case.tcia_series_uid and case.tcia_series_uid not in {r.get("SeriesInstanceUID") for r in rows}:
                log.warning("%s: manifest series %s is not among NBIA's series for the patient",
                            case.patient_id, case.tcia_series_uid)  # fmt: skip
        tasks = [SeriesTask(case, str(r["SeriesInstanceUID"]), r) for r in rows if r.get("SeriesInstanceUID")]
        if not tasks:
            raise TransientError("getSeries rows carry no SeriesInstanceUID", case.patient_id)
        return sorted(tasks, key=lambda t: (_int(t.meta.get("SeriesNumber")) or 0, t.series_uid))

    def _get_series(self, collection: str = "", patient: str = "", series_uid: str = "") -> list[dict[str, Any]]:
        def once() -> list[dict[str, Any]]:
            data = self.nbia.getSeries(
                collection=collection, patientId=patient, seriesUid=series_uid, modality=self.modality, format=""
            )
            if data is None:  # tcia_utils returns None for an empty answer and for one it cannot decode
                if (problem := self.transport.last_answer_problem()) is not None:
                    raise TransientError(f"getSeries {problem}", "NBIA getSeries", unavailable=True)
                return []
            if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
                raise TransientError(f"getSeries answered a {type(data).__name__}, not a list of series rows",
                                     "NBIA getSeries")  # fmt: skip
            return data

        return call_with_retry(once, self.policy, f"getSeries {collection or ''} {patient or series_uid}", self.sleep,
                               self.breaker)  # fmt: skip

    def _collection_hint(self, collection: str) -> str:
        """' (NBIA has no collection named X)' when getCollectionValues says so; '' if it is known or unsure."""
        with self._collections_lock:
            if self._collections is None:
                try:
                    rows = self.nbia.getCollections(format="")  # GET getCollectionValues
                    self._collections = {str(r.get("Collection")) for r in rows or [] if isinstance(r, dict)}
                except EtlError as exc:
                    log.debug("getCollectionValues failed: %s", exc.message)
                    self._collections = set()
            known = self._collections
        if known and collection not in known:
            return f" (NBIA has no collection named {collection!r})"
        return ""

    def _reported(self, task: SeriesTask) -> tuple[int | None, int | None]:
        """NBIA's (ImageCount, size in bytes) for the series: from getSeries, else getSeriesSize."""
        n, size_bytes = _int(task.meta.get("ImageCount")), _int(task.meta.get("FileSize"))
        if n is not None and size_bytes is not None:
            return n, size_bytes

        def once() -> Any:
            size = self.nbia.getSeriesSize(task.series_uid, format="")
            if size is None and (problem := self.transport.last_answer_problem()) is not None:
                raise TransientError(f"getSeriesSize {problem}", f"series {task.series_uid}", unavailable=True)
            return size

        size = call_with_retry(once, self.policy, f"getSeriesSize {task.series_uid}", self.sleep, self.breaker)
        row = size[0] if isinstance(size, list) and size and isinstance(size[0], dict) else {}
        n = n if n is not None else _int(row.get("ObjectCount"))
        size_bytes = size_bytes if size_bytes is not None else _int(row.get("TotalSizeInBytes"))
        if n is None:
            log.warning("series %s: NBIA gives no ImageCount; the DICOM count cannot be checked", task.series_uid)
        if size_bytes is None:
            log.warning("series %s: NBIA gives no size; only the compression-ratio cap bounds the download",
                        task.series_uid)  # fmt: skip
        return n, size_bytes

    # ---------------------------------------------------------------- download
    def fetch(self, task: SeriesTask, progress: RunProgress | None = None) -> SeriesOutcome:
        uid = task.series_uid
        out = SeriesOutcome(task.case.patient_id, uid, "cached")
        start = time.monotonic()
        done = self.cache.series_done(uid)
        if done is not None:
            out.files, out.bytes = done.n_files, done.bytes
            return out
        attempts = 0

        def once() -> tuple[int, int]:
            nonlocal attempts
            attempts += 1
            if progress is None:
                return self._download_once(task)
            with self.transport.watch(uid, lambda got, total: progress.bytes_of(uid, got, total)):
                return self._download_once(task)

        started = None
        try:
            started = self.breaker.check(f"series {uid}")
            image_count, size_bytes = self._reported(task)
            task = SeriesTask(task.case, uid, {**task.meta, "ImageCount": image_count, "FileSize": size_bytes})
            out.files, out.bytes = call_with_retry(once, self.policy, f"series {uid}", self.sleep, self.breaker)
            out.status = "fetched"
            self.breaker.record(None)
        except CacheUnusable:
            raise  # the cache itself cannot be written: nothing else can succeed either
        except EtlError as exc:
            out.status, out.reason, out.skipped = "failed", exc.what, isinstance(exc, ServiceUnavailable)
            self.breaker.record(exc, started)
        out.attempts = attempts
        out.seconds = time.monotonic() - start
        return out

    def _download_once(self, task: SeriesTask) -> tuple[int, int]:
        uid = task.series_uid
        image_count = _int(task.meta.get("ImageCount"))
        reported = _int(task.meta.get("FileSize"))
        most = self.limits.max_series_bytes(reported)
        # the zip (stored or deflated DICOM is never much bigger than its files) plus its local headers
        body_limit = None if most is None else most + 64 * 1024 + 512 * ((image_count or 0) + 2)
        # the zip and the files extracted from it are on disk together for a moment
        self.limits.ensure_free(self.cache.root, 2 * most if most is not None else 0, f"series {uid}")
        with self.cache.scratch(uid) as tmp, self.transport.body_limit(uid, body_limit):
            zpath = tmp / f"{uid}.zip"
            md5 = self.md5
            try:
                self._download_zip(uid, tmp, md5)
            except PermanentError as exc:
                if not (md5 and exc.what.startswith("HTTP 404")):
                    raise
                # a mirror without the MD5 endpoint: the series exists (getSeries listed it), so fetch the
                # plain zip; count, CRC and DICOM checks still apply, and the ledger records md5_checked=0
                log.warning("series %s: getImageWithMD5Hash not offered (HTTP 404); using getImage", uid)
                md5 = False
                self._download_zip(uid, tmp, md5)
            if not zpath.is_file():
                raise TransientError("download produced no zip (tcia_utils reported failure)", f"series {uid}")
            checked = check_series_zip(zpath, uid, image_count, md5_offered=md5, reported_bytes=reported,
                                       limits=self.limits)  # fmt: skip
            new_bytes = sum(m.size for m in checked.members if not self.cache.has_object(m.sha256))
            self.limits.ensure_free(self.cache.root, new_bytes, f"series {uid}")
            files: list[SeriesFile] = []
            with zipfile.ZipFile(zpath) as zf:
                for i, m in enumerate(checked.members):
                    if not self.cache.has_object(m.sha256):
                        part = tmp / f"member-{i}.part"
                        try:
                            extract_member(zf, m, part, f"series {uid}")
                        except OSError as exc:
                            raise CacheUnusable(f"cannot write to the cache: {exc.strerror or exc}", str(part)) from None
                        stored = self.cache.put_file(part, expect_md5=m.md5, where=f"series {uid} file {m.name}")
                        if stored.sha256 != m.sha256:
                            raise TransientError(f"file {m.name} changed between check and store", f"series {uid}")
                    files.append(SeriesFile(m.name, m.sha256, m.md5, m.size))
            for name in checked.ignored:
                log.debug("series %s: ignoring non-DICOM entry %s", uid, name)
        meta = task.meta
        total = sum(f.size for f in files)
        self.cache.record_series(
            SeriesRecord(
                series_uid=uid,
                collection=str(meta.get("Collection") or task.case.tcia_collection),
                patient_id=str(meta.get("PatientID") or task.case.tcia_patient_id),
                study_uid=_str(meta.get("StudyInstanceUID")),
                modality=_str(meta.get("Modality")),
                series_description=_str(meta.get("SeriesDescription")),
                series_number=_str(meta.get("SeriesNumber")),
                image_count=len(files) if image_count is None else image_count,
                n_files=len(files),
                bytes=total,
                md5_checked=checked.md5_checked,
                api_url=self.api_url,
            ),
            files,
        )
        return len(files), total

    def _download_zip(self, uid: str, folder: Path, md5: bool) -> None:
        """tcia_utils fetches ``<folder>/<uid>.zip``; a failure it swallowed is re-raised from the transport."""
        self.transport.take_failure(uid)
        self.nbia.downloadSeries(
            [uid], input_type="list", path=str(folder), hash="y" if md5 else "", as_zip=True, max_workers=1
        )
        failure = self.transport.take_failure(uid)
        if failure is not None:
            raise failure


def extract_tcia(
    manifest: StrPath,
    cache_dir: StrPath,
    api_url: str = DEFAULT_API_URL,
    jobs: int = 4,
    series_only: bool = False,
    exclusions: StrPath | None = None,
    shipped_exclusions: bool = True,
    modality: str = "MR",
    md5: bool = True,
    policy: RetryPolicy | None = None,
    limit: int | None = None,
    limits: Limits | None = None,
) -> TciaResult:
    """Fetch every (non-excluded) manifest case's series into ``cache_dir``; never raises for a bad series.

    The caller decides what a failure means (the CLI exits 1 and lists them). ``EtlError`` is raised only
    for problems with the inputs themselves (manifest unreadable, cache locked, bad URL) and for a cache
    that cannot take more (``CacheUnusable``, e.g. ``CacheFull``). ``limits`` default to
    ``Limits.from_env()``.
    """
    from etl.errors import ConfigError

    try:
        api_url = normalize_api_url(api_url)
    except ValueError as exc:
        raise ConfigError(str(exc), "--api-url") from exc
    policy = policy or RetryPolicy()
    jobs = max(1, int(jobs))
    cases, excluded = cases_to_fetch(manifest, exclusions, shipped_exclusions)
    if limit is not None:
        cases = cases[:limit]
    result = TciaResult(excluded=excluded)
    start = time.monotonic()
    cache = Cache(cache_dir)
    with cache.exclusive("extract tcia"), patched_nbia(api_url, policy.timeout) as (nbia, transport):
        if n := cache.clear_tmp():
            log.info("removed %d unfinished download(s) left by an earlier run", n)
        ex = TciaExtractor(cache, nbia, transport, api_url, policy, md5=md5, modality=modality,
                           limits=limits or Limits.from_env())  # fmt: skip
        tasks: list[SeriesTask] = []
        with ThreadPoolExecutor(max_workers=jobs) as pool, RunProgress("NBIA series lookup", len(cases)) as prog:
            futs = {pool.submit(ex.lookup, c, series_only): c for c in cases}
            with cancel_on_error(pool):
                for fut in as_completed(futs):
                    case = futs[fut]
                    try:
                        found = fut.result()
                    except CacheUnusable:
                        raise
                    except EtlError as exc:
                        result.lookup_failures.append((case.patient_id, exc.what))
                        prog.finished(case.patient_id, f"{case.patient_id}: lookup failed: {exc.what}",
                                      failed=not isinstance(exc, ServiceUnavailable), quiet=True)  # fmt: skip
                        continue
                    tasks.extend(found)
                    prog.finished(case.patient_id, f"{case.patient_id}: {len(found)} series listed", quiet=True)
        first: dict[str, SeriesTask] = {}  # a series listed twice is fetched once
        for t in tasks:
            first.setdefault(t.series_uid, t)
        unique = list(first.values())
        with ThreadPoolExecutor(max_workers=jobs) as pool, RunProgress("NBIA series download", len(unique)) as prog:
            futs2 = {pool.submit(_fetch_with_progress, ex, t, prog): t for t in unique}
            with cancel_on_error(pool):
                for done in as_completed(futs2):
                    o = done.result()
                    result.outcomes.append(o)
                    if o.status == "failed":
                        prog.finished(o.series_uid, f"{o.patient_id} series {o.series_uid}: FAILED: {o.reason}",
                                      failed=not o.skipped, quiet=True)  # fmt: skip
                    else:
                        rate = o.bytes / o.seconds / 1e6 if o.seconds > 0 and o.status == "fetched" else 0.0
                        extra = f" in {o.seconds:.2f} s ({rate:.1f} MB/s, {o.attempts} attempt(s))" if o.status == "fetched" else ""
                        prog.finished(o.series_uid, f"{o.patient_id} series {o.series_uid}: {o.status}, "
                                      f"{o.files} files, {o.bytes / 1e6:.2f} MB{extra}", quiet=o.status == "cached")  # fmt: skip
        result.requests = transport.requests_made
        result.gave_up = ex.breaker.tripped
    result.outcomes.sort(key=lambda o: (o.patient_id, o.series_uid))
    result.lookup_failures.sort()
    result.seconds = time.monotonic() - start
    return result


def _fetch_with_progress(ex: TciaExtractor, task: SeriesTask, prog: RunProgress) -> SeriesOutcome:
    prog.started(task.series_uid, f"{task.case.patient_id} {task.series_uid}")
    return ex.fetch(task, prog)


def manifest_series(cache: Cache, case: ManifestCase, series_only: bool = False) -> list[SeriesRecord]:
    """The cached series that belong to a manifest case (what ``export`` materializes)."""
    if series_only:
        rec = cache.series_done(case.tcia_series_uid) if case.tcia_series_uid else None
        return [rec] if rec else []
    return [
        r for r in cache.series_for_patient(case.tcia_collection, case.tcia_patient_id)
        if cache.series_done(r.series_uid) is not None
    ]  # fmt: skip


__all__ = ["DEFAULT_API_URL", "SeriesOutcome", "TciaResult", "extract_tcia", "manifest_series"]
