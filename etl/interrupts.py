"""Ctrl-C held back while a third-party native extension imports.

A KeyboardInterrupt raised inside a C extension's module initialisation can leave it half set up. DuckDB
(imported by ``tcia_utils`` through ``idc_index``, and by ``mamamia query``) then fails with
``ImportError: initialization failed`` and the interpreter segfaults at exit: a Ctrl-C at the wrong 20 ms
turned ``exit 130, error: interrupted`` into ``exit -11`` and a traceback, or was swallowed and ignored.
Torch's import can turn it into an ImportError that reads as "nnU-Net not usable here". Holding the
signal until the import has finished costs at most the import's own time (under a second) and gives the
ordinary interrupt right after it.
"""

from __future__ import annotations

import contextlib
import importlib
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType, ModuleType
from typing import Any


@contextlib.contextmanager
def interrupt_deferred() -> Iterator[None]:
    """Record SIGINT while the block runs; deliver it to the previous handler when the block is over.

    Only the main thread can install signal handlers, and a handler installed by C code (``getsignal`` says
    None) could not be put back: in those cases the block runs unchanged.
    """
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is None:
        yield
        return
    pending: list[int] = []

    def note(signum: int, frame: FrameType | None) -> None:
        pending.append(signum)

    try:
        previous: Any = signal.signal(signal.SIGINT, note)
    except (ValueError, OSError):  # e.g. an embedding interpreter without signal support
        yield
        return
    try:
        yield
    finally:
        # signal.signal runs any handler still due before it swaps, so a signal that arrived during the block
        # is recorded here, and one that arrives afterwards goes to the previous handler
        signal.signal(signal.SIGINT, previous)
    if not pending:
        return
    if previous is signal.default_int_handler:
        raise KeyboardInterrupt
    if callable(previous):
        previous(signal.SIGINT, None)
    elif previous == signal.SIG_DFL:
        signal.raise_signal(signal.SIGINT)
    # SIG_IGN: the caller chose to ignore it


def import_whole(name: str) -> ModuleType:
    """``importlib.import_module(name)``, with Ctrl-C delivered only once the import has finished."""
    module = sys.modules.get(name)
    if module is not None:
        return module
    with interrupt_deferred():
        return importlib.import_module(name)
