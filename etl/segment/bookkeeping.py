"""Mask bookkeeping: ``segmentation_methods.json`` says who made each automatic mask, and with what bytes.

One entry per case (patient_id -> entry)::

    {"status": "done", "method": "nnunet", "model": "<trainer folder name>", "model_sha256": "...",
     "folds": [0], "mask_sha256": "..."}
    {"status": "pending", ..., "previous": <the entry it replaces, or null>}
    {"status": "edited", ..., "mask_sha256": "<as made>", "edited_sha256": "<as found>"}

Why each field: the model is identified by the sha256 of its files (``etl.segment.nnunet.model_digest``),
never by the path it was given, so resuming through a relative instead of an absolute path, or after the
model folder moved, redoes nothing; the mask's sha256 tells a mask this stage made from one a curator has
since edited in place, which a method switch must never overwrite; ``pending`` entries are written before
any work starts, so a run killed after writing a mask and before recording it leaves no mask of unknown
origin (the next run settles the entry from the mask's bytes).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from etl.atomic import atomic_path
from etl.contracts import SEGMENTATION_METHODS
from etl.hashing import sha256_file

METHODS_FILE = SEGMENTATION_METHODS
IDENTITY = ("method", "model_sha256", "folds")  # what makes two runs the same maker of masks

Entry = dict[str, Any]


def read_methods(root: Path) -> dict[str, Entry]:
    """The record of a staged directory (empty when there is none or it is unreadable)."""
    try:
        data = json.loads((root / METHODS_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): v for k, v in data.items() if isinstance(v, dict)} if isinstance(data, dict) else {}


def write_methods(root: Path, record: dict[str, Entry]) -> None:
    with atomic_path(root / METHODS_FILE) as tmp:
        tmp.write_text(json.dumps(dict(sorted(record.items())), indent=1, sort_keys=True) + "\n")


def signature(method: str, model: str | None = None, model_sha256: str | None = None,
              folds: tuple[int, ...] | None = None) -> Entry:
    """What a run records about itself (``model`` is the trainer folder's name, for people to read)."""
    sig: Entry = {"method": method}
    if method == "nnunet":
        sig.update(model=model, model_sha256=model_sha256, folds=sorted(folds or ()))
    return sig


def same_maker(entry: Entry, sig: Entry) -> bool:
    return all(entry.get(k) == sig.get(k) for k in IDENTITY)


def describe(entry: Entry) -> str:
    if entry.get("method") != "nnunet":
        return str(entry.get("method"))
    digest = str(entry.get("model_sha256") or "")[:12]
    name = Path(str(entry.get("model") or "?")).name
    return f"nnunet ({name}{', sha256 ' + digest if digest else ''}, folds {entry.get('folds')})"


def pending(sig: Entry, previous: Entry | None) -> Entry:
    return {**sig, "status": "pending", "previous": previous}


def done(sig: Entry, mask: Path) -> Entry:
    return {**sig, "status": "done", "mask_sha256": sha256_file(mask)}


@dataclass(frozen=True)
class Plan:
    action: str  # "make" (no mask), "redo" (another maker's untouched mask), "keep"
    why: str | None = None  # for a kept mask the run reports (edited, unverifiable)
    entry: Entry | None = None  # the case's entry as it now stands, when it changed


def _legacy_same(entry: Entry, sig: Entry, model_path: Path | None) -> bool:
    """An entry from before mask checksums (the model recorded by its path)."""
    if entry.get("method") != sig.get("method"):
        return False
    if sig.get("method") != "nnunet":
        return True
    try:
        same_path = model_path is not None and Path(str(entry.get("model"))).resolve() == model_path.resolve()
    except (OSError, RuntimeError):
        same_path = False
    return same_path and sorted(entry.get("folds") or []) == sig.get("folds")


def decide(mask: Path, entry: Entry | None, sig: Entry, model_path: Path | None = None) -> Plan:
    """What to do with one case's automatic mask, given its entry and this run's signature."""
    if not mask.exists():
        return Plan("make")
    if entry is None:
        return Plan("keep")  # put there by hand (nobody recorded making it): never overwritten
    current = sha256_file(mask)
    changed: Entry | None = None
    if entry.get("status") == "pending":  # a killed run: settle the entry from the bytes found
        previous = entry.get("previous")
        if isinstance(previous, dict) and previous.get("mask_sha256") == current:
            entry = changed = previous  # the killed run never replaced the earlier mask
        else:  # written (atomically) by the killed run before it could record it
            entry = changed = {k: v for k, v in entry.items() if k not in ("previous", "status")}
            entry.update(status="done", mask_sha256=current)
    if "mask_sha256" not in entry:  # recorded before mask checksums
        if _legacy_same(entry, sig, model_path):
            return Plan("keep", entry={**sig, "status": "done", "mask_sha256": current})
        return Plan("keep", f"mask made by {entry.get('method')} before mask checksums were recorded, so a hand "
                    f"edit cannot be ruled out; kept (delete it to segment the case with {describe(sig)})", changed)
    if entry.get("status") == "edited" or entry["mask_sha256"] != current:
        if entry.get("status") != "edited" or entry.get("edited_sha256") != current:
            changed = {**entry, "status": "edited", "edited_sha256": current}
        if same_maker(entry, sig):
            return Plan("keep", entry=changed)
        return Plan("keep", f"mask edited by hand since {describe(entry)} made it; kept, not redone with "
                    f"{describe(sig)} (delete it to segment the case again)", changed)
    return Plan("keep" if same_maker(entry, sig) else "redo", entry=changed)
