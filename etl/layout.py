"""Where each file of a staged directory or release lives, from the release definition's naming templates.

Every stage that reads or writes case files asks a ``Layout`` instead of formatting paths itself, so the
naming convention is defined once, as data (``release/*.yaml``, section ``naming``). Folder names come from
the same templates (the fixed part before the first placeholder), and so does the nnU-Net case id
(``split.nnunet_case_id``): a definition that renames ``segmentations/`` or the case ids renames them for
the segment stage, the release, verify, Croissant, review and the exports alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


from etl.contracts import CORRECTIONS, DEFAULT_CASE_ID, check_case_id_template, nnunet_case_id
from etl.yamlfile import load_yaml_mapping
from etl.errors import ConfigError
from etl.resources import data_path
from etl.types import StrPath

TEMPLATE_KEYS = ("image", "expert_mask", "automatic_mask", "patient_info", "imaging_json")
RELEASE_KEYS = ("image", "expert_mask", "automatic_mask", "patient_info")  # imaging_json: staged only


@dataclass(frozen=True)
class Layout:
    """Naming templates rooted at a directory."""

    root: Path
    templates: dict[str, str]
    case_id_template: str = DEFAULT_CASE_ID

    @classmethod
    def from_definition(cls, root: StrPath, definition: StrPath | None = None) -> Layout:
        """Layout for ``root`` using the ``naming`` section of a release definition (default: v1)."""
        def_path = Path(definition) if definition else data_path("release/v1.yaml")
        raw = load_yaml_mapping(def_path, "release definition")
        naming = raw.get("naming") or {}
        missing = [k for k in TEMPLATE_KEYS if k not in naming]
        if missing:
            raise ConfigError(f"naming templates missing: {', '.join(missing)}", str(def_path))
        return cls(Path(root), {k: str(naming[k]) for k in TEMPLATE_KEYS}, _case_id_template(raw, str(def_path)))

    @classmethod
    def from_recorded(cls, root: StrPath, definition: dict[str, Any]) -> Layout:
        """Layout of a built release from the definition its ``provenance.json`` records (the naming it was
        built with, whatever the installed v1 says); a record without naming templates means v1."""
        naming = definition.get("naming") or {}
        templates = ({k: str(naming[k]) for k in TEMPLATE_KEYS} if all(k in naming for k in TEMPLATE_KEYS)
                     else cls.from_definition(root).templates)
        return cls(Path(root), templates, _case_id_template(definition, "provenance.json: definition"))

    def case_id(self, patient_id: str) -> str:
        """The nnU-Net case identifier of a case (``split.nnunet_case_id``; etl.contracts)."""
        return nnunet_case_id(patient_id, self.case_id_template)

    def folder(self, key: str) -> Path:
        """The fixed folder of a template: its path up to the first component with a placeholder
        (``images/{PATIENT_ID}/...`` -> ``ROOT/images``, ``segmentations/expert/{patient_id}.nii.gz`` ->
        ``ROOT/segmentations/expert``)."""
        fixed: list[str] = []
        for part in Path(self.templates[key]).parts[:-1]:
            if "{" in part:
                break
            fixed.append(part)
        if not fixed:
            raise ConfigError(f"naming template {key} has no fixed folder: {self.templates[key]!r}", f"naming.{key}")
        return self.root.joinpath(*fixed)

    def glob(self, key: str) -> str:
        """Root-relative glob of every file a template writes (``images/*/*.nii.gz``): the fixed folder, one
        ``*`` per templated folder, ``*`` plus the file name's fixed ending (Croissant ``includes``)."""
        parts = Path(self.templates[key]).parts
        fixed = self.folder(key).relative_to(self.root).parts
        name = parts[-1]
        ending = name[name.rindex("}") + 1:] if "}" in name else ""
        return "/".join([*fixed, *["*"] * (len(parts) - len(fixed) - 1), "*" + ending])

    def segmentations(self) -> Path:
        """The folder holding both mask folders (``segmentations/``): where corrections.parquet lives."""
        expert, automatic = self.folder("expert_mask"), self.folder("automatic_mask")
        common = Path(*[a for a, b in zip(expert.parts, automatic.parts) if a == b] or ["."])
        if common == self.root or self.root not in common.parents:
            raise ConfigError("the expert and automatic mask templates share no folder below the root",
                              "naming.expert_mask / naming.automatic_mask")
        return common

    def corrections(self) -> Path:
        """``segmentations/corrections.parquet``: the expert corrections imported by ``mamamia review``."""
        return self.segmentations() / CORRECTIONS

    def top_folders(self, keys: tuple[str, ...] = RELEASE_KEYS) -> tuple[str, ...]:
        """Names of the top-level folders the templates write (a release: images, segmentations,
        patient_info_files), in template order."""
        out: list[str] = []
        for key in keys:
            name = self.folder(key).relative_to(self.root).parts[0]
            if name not in out:
                out.append(name)
        return tuple(out)

    def _render(self, key: str, patient_id: str, **extra: int) -> Path:
        rel = self.templates[key].format(PATIENT_ID=patient_id.upper(), patient_id=patient_id.lower(), **extra)
        return self.root / rel

    def image(self, patient_id: str, phase: int) -> Path:
        return self._render("image", patient_id, phase=phase)

    def expert_mask(self, patient_id: str) -> Path:
        return self._render("expert_mask", patient_id)

    def automatic_mask(self, patient_id: str) -> Path:
        return self._render("automatic_mask", patient_id)

    def patient_info(self, patient_id: str) -> Path:
        return self._render("patient_info", patient_id)

    def imaging_json(self, patient_id: str) -> Path:
        return self._render("imaging_json", patient_id)

    def images(self, patient_id: str) -> list[Path]:
        """Existing phase files of a case, in phase order."""
        found = []
        phase = 0
        while (p := self.image(patient_id, phase)).exists():
            found.append(p)
            phase += 1
        return found


def _case_id_template(definition: dict[str, Any], where: str) -> str:
    split = definition.get("split") or {}
    template = split.get("nnunet_case_id") if isinstance(split, dict) else None
    if template is None:
        return DEFAULT_CASE_ID
    if not isinstance(template, str):
        raise ConfigError(f"nnunet_case_id must be text, got {template!r}", f"{where}: split.nnunet_case_id")
    return check_case_id_template(template, f"{where}: split.nnunet_case_id")
