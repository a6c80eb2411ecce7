"""A release as an nnU-Net v2 raw dataset (``nnUNet_raw/DatasetNNN_NAME``), ready for
``nnUNetv2_plan_and_preprocess -d NNN`` and training with the release's own folds.

Layout (nnU-Net's dataset format): ``imagesTr/{case}_{channel:04d}.nii.gz`` (one channel per chosen phase),
``labelsTr/{case}.nii.gz``, ``imagesTs/{case}_{channel:04d}.nii.gz`` (the release's test cases),
``dataset.json`` (channel names, labels, numTraining, file ending) and ``splits_final.json`` (the release's
folds, restricted to the exported training cases), which belongs in ``nnUNet_preprocessed/DatasetNNN_NAME/``
(``--preprocessed`` puts it there). ``{case}`` is the release's nnU-Net case identifier, so the folds match.
Files are hard links to the release when both are on one file system (no extra disk), copies otherwise.
The dataset folder is built beside its target and renamed into place when complete.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from etl.contracts import NNUNET_SPLITS
from etl.export.cases import ExportError, Selection, link_or_copy, select_cases
from etl.use.release import Release

FILE_ENDING = ".nii.gz"
LABELS = {"background": 0, "tumor": 1}


@dataclass
class NnunetExport:
    folder: Path
    selection: Selection
    splits: list[dict[str, list[str]]]
    files: dict[str, int] = field(default_factory=dict)  # "link" / "copy" -> count
    splits_written: list[Path] = field(default_factory=list)


def dataset_folder_name(dataset_id: int, name: str) -> str:
    if not 1 <= int(dataset_id) <= 999:
        raise ExportError(f"nnU-Net dataset ids are 1-999, got {dataset_id}", "--dataset-id")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", name):
        raise ExportError(f"dataset name must be letters, digits, '_' or '-', got {name!r}", "--name")
    return f"Dataset{int(dataset_id):03d}_{name}"


def export_nnunet(rel: Release, out: Path, dataset_id: int, phases: tuple[int, ...] = (1,), masks: str = "expert",
                  name: str = "MAMAMIA", link: bool = True, preprocessed: Path | None = None) -> NnunetExport:
    """Write ``out/DatasetNNN_NAME`` from a release (see the module docstring)."""
    from etl.atomic import atomic_dir, write_text
    from etl.progress import track

    folder_name = dataset_folder_name(dataset_id, name)
    _refuse_id_clash(out, dataset_id, folder_name)
    if preprocessed is not None:
        _refuse_id_clash(preprocessed, dataset_id, folder_name)
    selection = select_cases(rel, phases, masks)
    if any(not p.name.endswith(FILE_ENDING) for c in selection.cases for p in c.images):
        raise ExportError(f"release images are not {FILE_ENDING} files", str(rel.root))
    splits = _splits(rel, selection)
    result = NnunetExport(out / folder_name, selection, splits)
    counts = {"link": 0, "copy": 0}
    with atomic_dir(out / folder_name) as tmp:
        for case in track(selection.cases, f"nnU-Net export {folder_name}", total=len(selection.cases)):
            images_dir = tmp / ("imagesTr" if case.split == "train" else "imagesTs")
            for channel, src in enumerate(case.images):
                counts[link_or_copy(src, images_dir / f"{case.case_id}_{channel:04d}{FILE_ENDING}", link)] += 1
            if case.split == "train":
                assert case.label is not None  # select_cases keeps training cases with a label only
                counts[link_or_copy(case.label, tmp / "labelsTr" / f"{case.case_id}{FILE_ENDING}", link)] += 1
        (tmp / "imagesTs").mkdir(exist_ok=True)
        write_text(tmp / "dataset.json", json.dumps(_dataset_json(rel, selection), indent=2) + "\n")
        write_text(tmp / NNUNET_SPLITS, json.dumps(splits, indent=2) + "\n")
        write_text(tmp / "mamamia_export.json", json.dumps(_provenance(rel, selection), indent=2) + "\n")
    result.files = counts
    result.splits_written.append(result.folder / NNUNET_SPLITS)
    if preprocessed is not None:
        target = preprocessed / folder_name / NNUNET_SPLITS
        write_text(target, json.dumps(splits, indent=2) + "\n")
        result.splits_written.append(target)
    return result


def _refuse_id_clash(root: Path, dataset_id: int, folder_name: str) -> None:
    """nnU-Net finds a dataset by its number: two folders with one id would make -d NNN ambiguous."""
    if not root.is_dir():
        return
    prefix = f"Dataset{int(dataset_id):03d}_"
    clash = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name.startswith(prefix) and p.name != folder_name
                   and not p.name.endswith((".partial", ".old")))
    if clash:
        raise ExportError(f"dataset id {dataset_id} is already used by {clash[0]}; choose another --dataset-id",
                          str(root))


def _splits(rel: Release, selection: Selection) -> list[dict[str, list[str]]]:
    """The release's splits_final.json, restricted to the exported training cases; a release built without
    one gets the same folds from its table. Every exported training case must sit in exactly one fold."""
    exported = {c.case_id for c in selection.train}
    path = rel.root / NNUNET_SPLITS
    if path.is_file():
        try:
            folds = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ExportError(f"unreadable splits_final.json: {exc}", str(path)) from exc
    else:
        ks = sorted({c.fold for c in selection.train if c.fold is not None})
        folds = [{"train": [c.case_id for c in selection.train if c.fold != k],
                  "val": [c.case_id for c in selection.train if c.fold == k]} for k in ks]
    out = []
    for k, fold in enumerate(folds):
        val = sorted(set(fold.get("val", [])) & exported)
        train = sorted(set(fold.get("train", [])) & exported)
        if set(fold.get("val", [])) and not val:
            raise ExportError(f"fold {k} has no validation case left among the exported training cases", str(path))
        out.append({"train": train, "val": val})
    in_val = [i for f in out for i in f["val"]]
    unplaced = sorted(exported - set(in_val))
    if unplaced or len(in_val) != len(set(in_val)):
        raise ExportError(f"splits_final.json does not place every training case in one fold (e.g. "
                          f"{(unplaced or in_val)[0]}); is it this release's?", str(path))
    return out


def _dataset_json(rel: Release, selection: Selection) -> dict[str, Any]:
    release = rel.provenance.get("release", {})
    return {
        "channel_names": {str(i): f"DCE_phase_{p:04d}" for i, p in enumerate(selection.phases)},
        "labels": dict(LABELS),
        "numTraining": len(selection.train),
        "file_ending": FILE_ENDING,
        "name": f"{release.get('name', 'release')}-{release.get('version', '?')}",
        "description": (f"Exported by mamamia export nnunet: DCE-MRI phases {','.join(map(str, selection.phases))} "
                        f"as channels, {selection.masks} masks; imagesTs = the release's test cases"),
        "reference": str(rel.root),
        "licence": "see LICENSES.md of the release",
    }


def _provenance(rel: Release, selection: Selection) -> dict[str, Any]:
    return {
        "release": rel.provenance.get("release", {}),
        "release_path": str(rel.root),
        "phases": list(selection.phases),
        "masks": selection.masks,
        "training_cases": len(selection.train),
        "test_cases": len(selection.test),
        "label_kinds": {k: sum(1 for c in selection.train if c.label_kind == k) for k in ("expert", "automatic")},
        "left_out": dict(sorted(selection.left_out.items())),
        "cases": {c.case_id: c.patient_id for c in selection.cases},
    }
