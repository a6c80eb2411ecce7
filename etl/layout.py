"""Where each file of a staged directory or release lives, from the release definition's naming templates.

Every stage that reads or writes case files asks a ``Layout`` instead of formatting paths itself, so the
naming convention is defined once, as data (``release/*.yaml``, section ``naming``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


from etl.yamlfile import load_yaml_mapping
from etl.errors import ConfigError
from etl.resources import data_path

TEMPLATE_KEYS = ("image", "expert_mask", "automatic_mask", "patient_info", "imaging_json")


@dataclass(frozen=True)
class Layout:
    """Naming templates rooted at a directory."""

    root: Path
    templates: dict[str, str]

    @classmethod
    def from_definition(cls, root: str | Path, definition: str | Path | None = None) -> Layout:
        """Layout for ``root`` using the ``naming`` section of a release definition (default: v1)."""
        def_path = Path(definition) if definition else data_path("release/v1.yaml")
        naming = load_yaml_mapping(def_path, "release definition").get("naming") or {}
        missing = [k for k in TEMPLATE_KEYS if k not in naming]
        if missing:
            raise ConfigError(f"naming templates missing: {', '.join(missing)}", str(def_path))
        return cls(Path(root), {k: str(naming[k]) for k in TEMPLATE_KEYS})

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
