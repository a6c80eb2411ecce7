"""A release as a MONAI datalist (the decathlon / Auto3DSeg JSON that ``monai.data.load_decathlon_datalist``
and ``monai.auto3dseg.utils.datafold_read`` read).

``training``: the release's training cases, each with ``image`` (one path, or a list for several phases:
MONAI's ``LoadImaged`` stacks a list as channels), ``label`` and its ``fold``; ``validation`` (only with
``val_fold``): that fold's cases, which then leave ``training``; ``testing``: the held-out test cases.
Paths are absolute, so the datalist works from any directory.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from etl.export.cases import ExportCase, ExportError, Selection, select_cases
from etl.use.release import Release


def monai_datalist(rel: Release, phases: tuple[int, ...] = (1,), masks: str = "expert",
                   val_fold: int | None = None) -> tuple[dict[str, Any], Selection]:
    """The datalist document and the case selection it came from."""
    selection = select_cases(rel, phases, masks)
    folds = sorted({c.fold for c in selection.train if c.fold is not None})
    if val_fold is not None and val_fold not in folds:
        raise ExportError(f"no fold {val_fold} in this release (folds: {', '.join(map(str, folds))})", "--val-fold")
    doc: dict[str, Any] = {
        "name": "{name}-{version}".format(**{"name": "release", "version": "?", **rel.provenance.get("release", {})}),
        "description": f"DCE-MRI phases {','.join(map(str, phases))}, {masks} masks; folds of the release's split",
        "release": str(rel.root),
        "phases": list(phases),
        "training": [_entry(c, with_fold=True) for c in selection.train if val_fold is None or c.fold != val_fold],
    }
    if val_fold is not None:
        doc["validation"] = [_entry(c, with_fold=True) for c in selection.train if c.fold == val_fold]
    doc["testing"] = [_entry(c, with_fold=False) for c in selection.test]
    return doc, selection


def write_monai_datalist(rel: Release, out: Path, **options: Any) -> Selection:
    from etl.atomic import write_text

    doc, selection = monai_datalist(rel, **options)
    write_text(out, json.dumps(doc, indent=2) + "\n")
    return selection


def _entry(case: ExportCase, with_fold: bool) -> dict[str, Any]:
    images = [str(p) for p in case.images]
    entry: dict[str, Any] = {"image": images[0] if len(images) == 1 else images}
    if case.label is not None:
        entry["label"] = str(case.label)
        entry["label_kind"] = case.label_kind
    if with_fold and case.fold is not None:
        entry["fold"] = case.fold
    entry["patient_id"] = case.patient_id
    return entry
