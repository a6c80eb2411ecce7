"""`review prepare`: render every case's six views once, into a cache keyed by what they show.

Layout of the cache (``CaseSet.cache_dir()``, or ``--cache``)::

    review/{patient_id}/{key}/post_axial.png ... sub_sagittal.png
    review/{patient_id}/current.json   # {key, mask_sha256, post_sha256, pre_sha256, point, sizes, ...}

``key`` is the sha256 of the render version and the sha256 of the post-contrast phase, the pre-contrast
phase and the automatic mask: a changed mask (or image) gives a new key and is re-rendered, an unchanged one
is skipped, so a killed run resumes where it stopped. ``current.json`` is written last, atomically, so it
never points at half-written pictures; older key folders of the case are removed after the switch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from etl.atomic import write_bytes, write_text
from etl.errors import ValidationFailed
from etl.review.cases import CaseSet, FileHashes, ReviewCase, lesion_box_centre, load_cases, sha256_file
from etl.review.render import PLANES, RENDER_VERSION
from etl.types import StrPath

log = logging.getLogger("etl.review")

VIEW_SERIES = ("post", "sub")
VIEWS: tuple[str, ...] = tuple(f"{s}_{p}" for s in VIEW_SERIES for p in PLANES)
CURRENT = "current.json"


@dataclass
class PrepareResult:
    rendered: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    cache: Path | None = None


def _inputs(case: ReviewCase) -> dict[str, Path | None]:
    if case.post is None:
        raise ValidationFailed("needs a first post-contrast phase (phase 0001)", str(case.phases[0].parent))
    if case.automatic is None:
        raise ValidationFailed("no automatic mask", case.patient_id)
    return {"post": case.post, "pre": case.pre, "mask": case.automatic}


def _stats(files: dict[str, Path | None]) -> dict[str, list[int] | None]:
    out: dict[str, list[int] | None] = {}
    for name, path in files.items():
        if path is None:
            out[name] = None
        else:
            st = path.stat()
            out[name] = [int(st.st_size), int(st.st_mtime_ns)]
    return out


def _hashes(files: dict[str, Path | None], hashes: FileHashes | None = None) -> dict[str, str | None]:
    h = hashes.sha256 if hashes is not None else sha256_file
    return {f"{name}_sha256": (h(path) if path is not None else None) for name, path in files.items()}


def view_key(digests: dict[str, str | None]) -> str:
    text = "\n".join([f"render {RENDER_VERSION}", *(f"{k} {digests[k] or '-'}" for k in sorted(digests))])
    return hashlib.sha256(text.encode()).hexdigest()


def read_current(cache: Path, patient_id: str) -> dict[str, Any] | None:
    """The case's cache record, or None when absent, unreadable or pointing at missing pictures."""
    try:
        rec = json.loads((cache / patient_id / CURRENT).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(rec, dict) or not isinstance(rec.get("key"), str):
        return None
    folder = cache / patient_id / rec["key"]
    if not all((folder / f"{v}.png").is_file() for v in rec.get("views", [])):
        return None
    return rec


def render_into(case: ReviewCase, cache: Path, digests: dict[str, str | None], box_key: str = "lesion_box",
                stats: dict[str, list[int] | None] | None = None) -> dict[str, Any]:
    """Render the case's views into ``cache/{patient_id}/{key}/`` and switch ``current.json`` to them."""
    from etl.plotstyle import MASK_RGB
    from etl.review.render import Layer, load_mask, load_volume, render_case

    key = view_key(digests)
    assert case.post is not None and case.automatic is not None
    post = load_volume(case.post)
    pre = load_volume(case.pre) if case.pre is not None else None
    mask = load_mask(case.automatic, post)
    box = lesion_box_centre(case, box_key)
    views = render_case(post, pre, [Layer(mask, MASK_RGB["reviewed"])], focus_mask=mask,
                        box_centre=post.to_lps_index(box) if box is not None else None, series=VIEW_SERIES)
    folder = cache / case.patient_id / key
    for name, png in views.png.items():
        write_bytes(folder / f"{name}.png", png)
    rec = {"patient_id": case.patient_id, "key": key, **digests, "views": sorted(views.png),
           "point": list(views.point), "point_source": views.point_source, "mm_per_px": views.mm_per_px,
           "sizes": {k: list(v) for k, v in views.sizes.items()}, "render_version": RENDER_VERSION,
           "file_stats": stats or {}}
    write_text(cache / case.patient_id / CURRENT, json.dumps(rec, indent=1, sort_keys=True) + "\n")
    for old in (cache / case.patient_id).iterdir():  # pictures of earlier masks: nothing points at them now
        if old.is_dir() and old.name != key:
            shutil.rmtree(old, ignore_errors=True)
    return rec


def ensure_views(case: ReviewCase, cache: Path, hashes: FileHashes | None = None,
                 box_key: str = "lesion_box") -> tuple[dict[str, Any], bool]:
    """The case's current cache record, rendering it first when missing or outdated; and whether it rendered.

    The mask is always re-hashed (it is small, and it is what a rating is tied to). The two phases (tens of
    MB each) are re-hashed only when their size or modification time differs from the record's: the same
    quick check as make and rsync, so a page of a prepared case opens without reading its images."""
    files = _inputs(case)
    stats = _stats(files)
    rec = read_current(cache, case.patient_id)
    if rec is not None and rec.get("file_stats", {}).get("post") == stats["post"] \
            and rec.get("file_stats", {}).get("pre") == stats["pre"]:
        mask = files["mask"]
        assert mask is not None  # _inputs refuses a case without an automatic mask
        mask_sha = (hashes.sha256 if hashes is not None else sha256_file)(mask)
        digests = {"post_sha256": rec.get("post_sha256"), "pre_sha256": rec.get("pre_sha256"), "mask_sha256": mask_sha}
        if rec.get("key") == view_key(digests):
            return rec, False
    digests = _hashes(files, hashes)
    if rec is not None and rec.get("key") == view_key(digests):  # same bytes, new times (a copy, a touch)
        rec["file_stats"] = stats
        write_text(cache / case.patient_id / CURRENT, json.dumps(rec, indent=1, sort_keys=True) + "\n")
        return rec, False
    return render_into(case, cache, digests, box_key, stats), True


def _prepare_one(args: tuple[ReviewCase, str, str]) -> tuple[str, bool]:
    case, cache, box_key = args
    _, rendered = ensure_views(case, Path(cache), box_key=box_key)
    return case.patient_id, rendered


def prepare_views(source: StrPath | CaseSet, cache: StrPath | None = None, jobs: int = 1,
                  scheduler: str | None = None, definition: StrPath | None = None) -> PrepareResult:
    """Render the views of every case with an automatic mask (skipping those already current).

    A case that fails (unreadable file, mask on another grid...) is recorded in ``failed`` and the others
    go on; the caller decides the exit status."""
    from etl.progress import track
    from etl.runner import make_runner
    from etl.segment.config import load_config

    cases = source if isinstance(source, CaseSet) else load_cases(source, definition)
    target = Path(cache) if cache is not None else cases.cache_dir()
    target.mkdir(parents=True, exist_ok=True)
    box_key = load_config(definition).ftv.lesion_box_key
    result = PrepareResult(cache=target)
    result.failed.extend(cases.skipped)
    items = [(c, str(target), box_key) for c in cases.cases]
    for out in track(make_runner(jobs, scheduler).map(_prepare_one, items), "review prepare", total=len(items)):
        pid = cases.cases[out.index].patient_id
        if out.ok:
            (result.rendered if out.value[1] else result.skipped).append(pid)
        else:
            why = out.message if out.traceback is None else f"{out.error_kind}: {out.message}"
            log.error("%s: %s", pid, why)
            if out.traceback:
                log.debug("%s", out.traceback)
            result.failed.append((pid, why or "failed"))
    result.rendered.sort()
    result.skipped.sort()
    return result
