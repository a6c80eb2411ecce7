"""Inputs of a rebuild test: a small generated corpus served by the loopback NBIA and Synapse stand-ins.

Built from the same pieces as `mamamia demo` (etl/synth + etl/standins): the DICOM corpus in TCIA's shape,
its manifest, the previous release (table + expert masks) on the Synapse stand-in, and synthetic source
spreadsheets in the real Duke / I-SPY1 layouts. The rebuild definition is a copy of release/v1.yaml whose
`rebuild:` section points at these; the stand-ins' ephemeral addresses go on the command line.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SEED = 20241
PROJECT = "syn60868042"
CASES = [
    {"patient_id": "DUKE_001", "vendor": "GE", "view": "axial", "layout": "per_phase", "n_phases": 3},
    {"patient_id": "DUKE_002", "vendor": "SIEMENS", "view": "axial", "layout": "single_series", "n_phases": 3},
    {"patient_id": "ISPY1_1001", "vendor": "GE", "view": "sagittal", "layout": "single_series", "bilateral": False,
     "n_phases": 3},
    {"patient_id": "NACT_01", "vendor": "GE", "view": "sagittal", "layout": "per_phase", "bilateral": False,
     "n_phases": 3},
]
SMALL = {"matrix": (48, 48), "n_slices": 16}


@dataclass
class RebuildInputs:
    root: Path
    definition: Path
    manifest: Path
    sources: dict[str, Path]
    api_url: str
    endpoint: str
    ids: list[str]

    def args(self) -> list[str]:
        """The stand-ins' addresses (ephemeral ports), as a curator would pass a mirror."""
        return ["--api-url", self.api_url, "--endpoint", self.endpoint]


def write_rebuild_definition(path: Path, manifest: Path, sources: dict[str, Path]) -> Path:
    """release/v1.yaml with a split small corpora can have and a rebuild section for the stand-ins' data."""
    doc = yaml.safe_load((REPO / "release" / "v1.yaml").read_text())
    doc["split"] = dict(doc["split"], folds=2, test_fraction=0.25)
    doc["rebuild"] = {
        "manifest": str(manifest),
        "cache_verify": True,
        "synapse": {"entities": [{"id": PROJECT, "include": ["*.xlsx", "segmentations/expert/*"]}]},
        "expert_masks": {"entity": PROJECT, "include": ["segmentations/expert/*"]},
        "clinical": {"sources": {k: str(v) for k, v in sources.items()},
                     "base": "{synapse}/" + PROJECT + "/clinical_and_imaging_info.xlsx"},
        "segment": {"method": "ftv"},
        "release": {"verify_phi_from_dicom": True},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def write_cases(root: Path, cases: list[dict]) -> tuple[dict, Path]:
    """The generated corpus (TCIA's shape, expert masks under root/truth) and its manifest, as the demo writes them."""
    from etl.demo import with_series
    from etl.synth.corpus import write_corpus
    from etl.synth.release_table import previous_release_table
    from etl.transform.manifest import manifest_from_table, write_manifest

    cases = [dict(c, **SMALL, dataset=c["patient_id"].partition("_")[0]) for c in cases]
    ids = [c["patient_id"] for c in cases]
    written = write_corpus(root / "corpus", cases, seed=SEED, truth_dir=root / "truth")
    manifest = root / "manifest.csv"
    write_manifest(with_series(manifest_from_table(previous_release_table(ids, seed=SEED)), written), manifest)
    return written, manifest


@pytest.fixture(scope="session")
def rebuild_inputs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RebuildInputs]:
    from etl.standins.nbia import NbiaStandin
    from etl.standins.synapse import SynapseStandin
    from etl.synth.clinical_sources import write_clinical_sources
    from etl.synth.release_table import previous_release_table
    from etl.tables import write_table

    root = tmp_path_factory.mktemp("rebuild-inputs")
    ids = [c["patient_id"] for c in CASES]
    carried = [p for p in ids if not p.startswith(("DUKE", "ISPY1"))]
    _, manifest = write_cases(root, CASES)
    project = root / "synapse_project"
    write_table(previous_release_table(carried, seed=SEED), project / "clinical_and_imaging_info.xlsx")
    shutil.copytree(root / "truth" / "segmentations", project / "segmentations")
    sources = write_clinical_sources(root / "sources", [p for p in ids if p not in carried], seed=SEED)
    definition = write_rebuild_definition(root / "defs" / "rebuild.yaml", manifest, sources)
    token = secrets.token_urlsafe(24)
    old = os.environ.get("SYNAPSE_AUTH_TOKEN")
    os.environ["SYNAPSE_AUTH_TOKEN"] = token
    try:
        with NbiaStandin(root / "corpus", idle_timeout=900) as nbia, \
                SynapseStandin(project, token=token, root_id=PROJECT, idle_timeout=900) as syn:
            yield RebuildInputs(root, definition, manifest, sources, nbia.api_url, syn.origin, ids)
    finally:
        if old is None:
            os.environ.pop("SYNAPSE_AUTH_TOKEN", None)
        else:
            os.environ["SYNAPSE_AUTH_TOKEN"] = old
