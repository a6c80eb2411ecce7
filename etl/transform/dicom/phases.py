"""Phase grouping: one series' images into phases (slice positions repeat once per temporal position).

A series holding the whole dynamic (all phases interleaved) is split by the first temporal tag that
separates it; a series of one phase stays whole. ``series_phases`` then checks each phase's geometry and
gives it its acquisition time.
"""

from __future__ import annotations

import logging
from collections import defaultdict

import numpy as np

from etl.errors import DicomError
from etl.transform.dicom.geometry import phase_geometry, turned
from etl.transform.dicom.model import TEMPORAL_TAGS, Phase, Slice, where

log = logging.getLogger("etl.transform.dicom")


def split_phases(uid: str, slices: list[Slice]) -> list[list[Slice]]:
    """Split one series into phases when slice positions repeat, by the first temporal tag that does it.

    A position seen ``m`` times means ``m`` phases. A tag splits the series when either its values form
    exactly ``m`` groups of distinct positions (TemporalPositionIdentifier, AcquisitionNumber, ...), or, for
    values that also vary slice by slice (acquisition/trigger times of 2D-like acquisitions), when every
    position has ``m`` strictly increasing values whose ranks give ``m`` non-overlapping time windows.
    """
    off = np.flatnonzero(turned(slices))
    if off.size:
        raise DicomError("mixed slice orientations in one series", where(slices[int(off[0])]))
    normal = slices[0].normal
    pos = [round(float(s.ipp @ normal), 3) for s in slices]
    at: dict[float, list[int]] = defaultdict(list)
    for i, p in enumerate(pos):
        at[p].append(i)
    m = max(len(v) for v in at.values())
    if m == 1:
        return [slices]
    for tag in TEMPORAL_TAGS:
        maybe = [s.clock for s in slices] if tag == "AcquisitionTime" else [s.temporal.get(tag) for s in slices]
        keys = [k for k in maybe if k is not None]
        if len(keys) < len(maybe):
            continue
        groups: dict[float, list[int]] = defaultdict(list)
        for i, k in enumerate(keys):
            groups[k].append(i)
        if len(groups) == m and all(len({pos[i] for i in g}) == len(g) for g in groups.values()):
            log.debug("series %s: %d phases by %s", uid, m, tag)
            return [[slices[i] for i in groups[k]] for k in sorted(groups)]
        ranked = _rank_split(at, keys, m)
        if ranked is not None:
            log.debug("series %s: %d phases by %s ranks", uid, m, tag)
            return [[slices[i] for i in g] for g in ranked]
    # No tag separates them: name the problem and a file.
    short = [(p, idx) for p, idx in at.items() if len(idx) != m]
    if short:
        p, idx = short[0]
        raise DicomError(f"slice position {p} mm has {len(idx)} images where other positions have {m} "
                         "(missing or extra slice in a multi-phase series)", where(slices[idx[0]]))
    p, idx = next((p, idx) for p, idx in at.items() if len(idx) > 1)
    raise DicomError(
        f"duplicate slice position {p} mm that no temporal tag ({', '.join(TEMPORAL_TAGS)}) separates; "
        f"also in {slices[idx[0]].path.name}", where(slices[idx[1]]))


def _rank_split(at: dict[float, list[int]], keys: list[float], m: int) -> list[list[int]] | None:
    """Phase i = the i-th time each position was acquired, if that gives ``m`` disjoint time windows."""
    if any(len(idx) != m for idx in at.values()):
        return None
    groups: list[list[int]] = [[] for _ in range(m)]
    for idx in at.values():
        ordered = sorted(idx, key=lambda i: keys[i])
        if any(keys[a] == keys[b] for a, b in zip(ordered, ordered[1:])):
            return None
        for rank, i in enumerate(ordered):
            groups[rank].append(i)
    windows = [(min(keys[i] for i in g), max(keys[i] for i in g)) for g in groups]
    if any(hi >= lo for (_, hi), (lo, _) in zip(windows, windows[1:])):
        return None
    return groups


def series_phases(uid: str, slices: list[Slice]) -> list[Phase]:
    """The checked phases of one series, each with its acquisition time (raises DicomError).

    Phases of one series that share one clock (e.g. Philips keeps AcquisitionTime) are told apart in time
    by their trigger time.
    """
    phases = []
    for group in split_phases(uid, slices):
        ordered, affine = phase_geometry(uid, group)
        times = [s.clock for s in ordered if s.clock is not None]
        trig = ordered[0].temporal.get("TriggerTime")
        phases.append(Phase(series_uid=uid, slices=ordered, affine=affine, time=min(times) if times else None,
                            temporal_key=("TriggerTime", trig)))
    if len(phases) > 1 and len({ph.time for ph in phases}) < len(phases):
        for ph in phases:
            trig = ph.temporal_key[1] if ph.temporal_key else None
            ph.time = (ph.time or 0.0) + (trig or 0.0) / 1000.0
    return phases
