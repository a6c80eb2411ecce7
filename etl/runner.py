"""Map case-level work over a local process pool or a dask.distributed cluster, one outcome per case.

Cases are independent and each writes its outputs atomically, so the runner only has to (1) run them,
(2) never let one failing case stop the others, and (3) report expected faults (``EtlError``) as their
one-line message while keeping tracebacks for bugs. Work functions must be importable top-level
functions (pickled by reference for processes and dask workers).
"""

from __future__ import annotations

import logging
import os
import traceback
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any, Protocol

from etl.errors import EtlError

log = logging.getLogger("etl.runner")


@dataclass(frozen=True)
class Outcome:
    """Result of one item: ``value`` when ok, else the error kind, one-line message and (for bugs) traceback."""

    index: int
    ok: bool
    value: Any = None
    error_kind: str | None = None
    message: str | None = None
    exit_code: int = 0
    traceback: str | None = None


def call(fn: Callable[[Any], Any], index: int, item: Any) -> Outcome:
    """Run one item, turning any exception into an Outcome (picklable, unlike some exceptions)."""
    try:
        return Outcome(index, True, fn(item))
    except EtlError as exc:
        return Outcome(index, False, error_kind=type(exc).__name__, message=exc.message, exit_code=exc.exit_code)
    except Exception as exc:  # a bug in one case must not stop the others; the traceback is kept and reported
        return Outcome(index, False, error_kind=type(exc).__name__, message=str(exc) or repr(exc), exit_code=1,
                       traceback=traceback.format_exc())


class Runner(Protocol):
    """Maps a function over items; yields outcomes as they complete (any order)."""

    name: str

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> Iterator[Outcome]: ...


def _single_thread_env() -> None:
    """Pool workers share the CPUs: keep each one's own threading (BLAS, OpenMP) to one thread."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")


class LocalRunner:
    """In-process for one job (simplest tracebacks, no pickling); a ProcessPoolExecutor for more."""

    name = "local"

    def __init__(self, jobs: int = 1) -> None:
        self.jobs = max(1, int(jobs))

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> Iterator[Outcome]:
        """The pool is started and every item submitted now, before the caller's progress bar starts its
        thread, so the workers can be plain forks (see ``_context``); outcomes are yielded as they finish."""
        if self.jobs == 1 or len(items) <= 1:
            return (call(fn, i, item) for i, item in enumerate(items))
        pool = ProcessPoolExecutor(max_workers=min(self.jobs, len(items)), mp_context=_context(fn),
                                   initializer=_single_thread_env)
        futures = [pool.submit(call, fn, i, item) for i, item in enumerate(items)]
        return _as_finished(pool, futures)


def _context(fn: Callable[[Any], Any]) -> Any:
    """How pool workers start. A fork of a process whose only thread is this one inherits its imports
    (numpy, nibabel, pydicom: ~0.5 s of CPU per worker saved) and nothing unsafe; a fork of a process with
    other threads (a progress bar, a server, pytest-xdist) can inherit a held lock, so then the workers
    come from a fork server that has imported the work function's module once."""
    import multiprocessing as mp
    import threading

    methods = mp.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1:
        return mp.get_context("fork")
    if "forkserver" not in methods:
        return mp.get_context("spawn")
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["etl.runner", fn.__module__])
    return ctx


def _as_finished(pool: ProcessPoolExecutor, futures: list[Any]) -> Iterator[Outcome]:
    try:
        for fut in as_completed(futures):
            yield fut.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


class DaskRunner:
    """Submit to a dask.distributed scheduler; outcomes come back as tasks finish."""

    name = "dask"

    def __init__(self, address: str) -> None:
        self.address = address

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> Iterator[Outcome]:
        from distributed import Client, as_completed as dask_completed

        from etl.errors import ConfigError

        try:
            client = Client(self.address, timeout="20s")
        except (OSError, TimeoutError) as exc:
            raise ConfigError(f"cannot connect to dask scheduler: {exc}", self.address) from exc
        try:
            futures = [client.submit(call, fn, i, item, pure=False) for i, item in enumerate(items)]
            for fut in dask_completed(futures):
                yield client.gather(fut)
        finally:
            client.close()


def make_runner(jobs: int = 1, scheduler: str | None = None) -> Runner:
    """``--scheduler ADDR`` selects dask, otherwise a local pool of ``--jobs`` processes."""
    if scheduler:
        return DaskRunner(scheduler)
    return LocalRunner(jobs)
