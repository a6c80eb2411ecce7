"""``scan``: a case folder's inventory, series filter, phases and the dynamic series, in acquisition order.

Every problem is a ``DicomError`` whose ``where`` names the series and a file.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

from etl.errors import DicomError
from etl.transform.dicom.inventory import Inventory, read_images
from etl.transform.dicom.model import Decision, Phase, where
from etl.transform.dicom.phases import series_phases
from etl.transform.dicom.selection import select
from etl.transform.dicom.series_filter import filter_series, series_filter_rules

log = logging.getLogger("etl.transform.dicom")


def scan(root: str | Path, files: Iterable[Path] | None = None, series_filter: bool = True,
         series_uids: Sequence[str] | None = None) -> Inventory:
    """Inventory a case folder (or explicit files): series, phases in acquisition order, geometry checked.

    Ignored, and counted: non-DICOM files, DICOM without pixels (DICOMDIR, reports), repeated SOP
    instances (copied files), localizer/scout images, series without patient geometry, later studies of
    the patient (the first study with a dynamic series is converted), series of another geometry, series
    that are not phases of a dynamic held in one series, and (``series_filter``, default on) series that
    a ``series_filter`` rule of schemas/imaging_headers.yaml marks as not DCE, unless that would remove
    part of a dynamic (then the rule is not applied and a warning names it). ``series_uids`` (recorded
    for the case, e.g. the manifest's tcia_series_uid) settle which series are the dynamic: see
    ``selection.py``. Every series gets the rule that decided (``Inventory.decisions``). A series that
    fails its checks is an error unless it clearly is not part of the dynamic acquisition (another
    geometry and fewer images than one phase) or a filter rule removed it.
    """
    inv = read_images(root, files)
    root = inv.root
    by_series = inv.series
    rules = series_filter_rules() if series_filter else []
    hits = filter_series(by_series, rules) if rules else {}
    inv.recorded = [u.strip() for u in series_uids or () if u.strip()]

    cands: dict[str, list[Phase]] = {}
    errors = _broken_file_errors(inv)
    broken = set(errors)
    for uid, slices in by_series.items():
        if uid in errors:
            continue
        nogeo = [s for s in slices if s.geometry_error]
        if nogeo and len(nogeo) == len(slices):
            if uid not in hits:
                inv.n_no_geometry += len(slices)
                inv.series_errors[uid] = f"no patient geometry: {nogeo[0].geometry_error}"
                inv.decisions[uid] = Decision(False, "no_geometry", inv.series_errors[uid])
            continue
        try:
            if nogeo:
                raise DicomError(nogeo[0].geometry_error or "missing geometry", where(nogeo[0]))
            cands[uid] = series_phases(uid, slices)
        except DicomError as exc:
            errors[uid] = exc
    for uid in inv.recorded:
        if uid in errors:
            raise errors[uid]
    live = {u: e for u, e in errors.items() if u not in hits}  # a filtered series is never checked
    if not cands:
        raise next(iter(live.values())) if live else DicomError("no series with patient geometry", str(root))
    for uid in sorted(set(errors) & set(hits)):
        inv.decisions[uid] = Decision(False, f"series_filter {hits[uid]}", f"ignored by series_filter rule {hits[uid]}")
        if uid in broken:
            log.warning("%s: series %s ignored (series_filter rule %s); %s", root, uid, hits[uid], errors[uid].message)
    chosen = select(cands, {u: r for u, r in hits.items() if u in cands}, rules, inv.recorded or None, str(root))
    inv.decisions.update(chosen.decisions)
    inv.filtered = {u: r for u, r in hits.items() if u not in chosen.not_applied and u not in inv.series_errors}
    inv.filter_fallback = sorted(set(chosen.not_applied.values()))
    for uid, rule in inv.filtered.items():
        s0 = by_series[uid][0]
        log.info("%s: series %s #%s '%s' (%d images) ignored by series_filter rule %s", root, uid,
                 s0.series_number, s0.description, len(by_series[uid]), rule)

    study = chosen.study
    inv.ignored_studies = [u for u in chosen.studies if u != study]
    if inv.ignored_studies:
        log.warning("%s: %d studies; converting %s, ignoring %s", root, len(chosen.studies), study,
                    ", ".join(inv.ignored_studies))
    best = chosen.phases
    sig = best[0].slices[0].signature
    per_phase = len(best[0].slices)
    for uid, err in live.items():
        slices = by_series[uid]
        if slices[0].study_uid == study and (any(s.signature == sig for s in slices) or len(slices) >= per_phase):
            raise err  # could be (part of) the dynamic acquisition: never convert around it
        inv.series_errors[uid] = err.what
        inv.decisions[uid] = Decision(False, "series_error", err.what)
        log.warning("%s: series %s ignored: %s", root, uid, err.message)
    kept = {ph.series_uid for ph in best}
    inv.ignored_series = sorted(u for u in by_series if u not in kept and u not in inv.filtered)
    counts = {len(ph.slices) for ph in best}
    if len(counts) > 1:
        most = max(counts, key=lambda c: sum(len(p.slices) == c for p in best))
        odd = next(ph for ph in best if len(ph.slices) != most)
        raise DicomError(f"phase has {len(odd.slices)} slices where the other phases have {most} "
                         "(missing slice at an end of the stack?)", where(odd.slices[-1]))
    if any(ph.time is None for ph in best) and len(best) > 1:
        log.warning("%s: phases without acquisition time; ordered by series number and temporal tag", root)
    inv.phases = sorted(best, key=lambda ph: (ph.time if ph.time is not None else math.inf,
                                              ph.slices[0].series_number or 0, ph.series_uid,
                                              ph.slices[0].temporal.get("TemporalPositionIdentifier") or 0))
    if inv.recorded and len(inv.recorded) == 1 and inv.phases[0].series_uid != inv.recorded[0]:
        raise DicomError(f"recorded series {inv.recorded[0]} is not the first phase (series "
                         f"{inv.phases[0].series_uid} was acquired first)", str(root))
    return inv



def _broken_file_errors(inv: Inventory) -> dict[str, DicomError]:
    """An empty or cut file in a folder of a series' images may be one of its slices: that series is broken
    (an error when it could be part of the dynamic, like any failed check). Elsewhere it is only reported."""
    by_folder: dict[Path, set[str]] = {}
    for uid, slices in inv.series.items():
        for s in slices:
            by_folder.setdefault(s.path.parent, set()).add(uid)
    errors: dict[str, DicomError] = {}
    for path, why in sorted(inv.broken.items()):
        owners = by_folder.get(Path(path).parent, set())
        for uid in sorted(owners):
            errors.setdefault(uid, DicomError(f"{why}, in a folder of the series' images: a slice may be missing",
                                              f"series {uid}, file {path}"))
        if not owners:
            log.warning("%s: file %s ignored: %s", inv.root, path, why)
    return errors
