"""The `rebuild:` section of a release definition, resolved into the variables the stage table uses.

Every path a stage writes is derived from ``--work`` (one layout, so a rerun finds what the killed run left):

    WORK/cache/tcia  WORK/cache/synapse      extraction caches (one per source: each stage owns its output)
    WORK/dicom/<patient_id>/...              TCIA cache exported as DICOM folders (input of convert)
    WORK/synapse/<entity>/...                Synapse entities exported at their relative paths
    WORK/staged/                             convert + expert masks + segment (+ review views)
    WORK/clinical_and_imaging_info.parquet   clinical build
    WORK/splits/train_test_splits.csv        split
    WORK/release/<name>-<version>/           release build (``release.dir`` may put it elsewhere)
    WORK/rebuild.ledger.json                 what each stage did (etl/rebuild/ledger.py)

What comes from outside (manifest, endpoints, Synapse entities, source spreadsheets, model folder) is declared
in the definition's ``rebuild:`` section; overrides (``--set``, ``--source``, the demo's stand-in addresses)
are merged over it, so a curator's rebuild and the demo run the same code with different data.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from etl.contracts import SPLITS, TABLE
from etl.errors import ConfigError
from etl.interrupts import import_whole
from etl.types import StrPath

# keys of the `rebuild:` section; anything else is most likely a typo and is refused (a silently ignored
# `clinical.sourecs:` would rebuild without the source spreadsheets)
SECTION_KEYS: dict[str, frozenset[str] | None] = {
    "manifest": None, "exclusions": None, "cache_verify": None, "cache_link": None,
    "tcia": frozenset({"api_url", "jobs"}),
    "synapse": frozenset({"endpoint", "jobs", "entities"}),
    "expert_masks": frozenset({"entity", "include"}),
    "clinical": frozenset({"sources", "base"}),
    "segment": frozenset({"method", "model", "fallback", "folds", "device"}),
    "review": frozenset({"prepare"}),
    "release": frozenset({"dir", "only_staged", "report", "verify_phi_from_dicom"}),
}
ENTITY_KEYS = frozenset({"id", "include", "optional"})
_SYN_ID = re.compile(r"syn\d+")
_PLACEHOLDER = re.compile(r"\{(work|synapse|staged|dicom)\}")


@dataclass
class RebuildSpec:
    """Resolved inputs of one rebuild: the variables of the stage table and the notes worth printing."""

    definition: Path
    work: Path
    name: str
    version: str
    variables: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    @property
    def ledger_path(self) -> Path:
        return self.work / "rebuild.ledger.json"


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` on top of ``base``: mappings merge key by key, anything else (lists too) replaces."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_set(assignments: list[str]) -> dict[str, Any]:
    """``--set a.b=VALUE`` items into a nested mapping; VALUE is read as YAML (numbers, true/false, null, lists)."""
    out: dict[str, Any] = {}
    for text in assignments:
        key, eq, raw = text.partition("=")
        if not eq or not key.strip():
            raise ConfigError(f"--set needs KEY=VALUE, got {text!r}", "--set")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {key}: {part} is set twice", "--set")
        node[parts[-1]] = value
    return out


def check_section(section: dict[str, Any], where: str) -> None:
    """Refuse unknown keys and malformed entities, naming the key."""
    for key, value in section.items():
        if key not in SECTION_KEYS:
            raise ConfigError(f"unknown key rebuild.{key}; expected one of {', '.join(SECTION_KEYS)}", where)
        allowed = SECTION_KEYS[key]
        if allowed is None or value is None:
            continue
        if not isinstance(value, dict):
            raise ConfigError(f"rebuild.{key} must be a mapping", where)
        unknown = sorted(set(value) - allowed)
        if unknown:
            raise ConfigError(f"unknown key rebuild.{key}.{unknown[0]}; expected one of {', '.join(sorted(allowed))}",
                              where)
    entities = (section.get("synapse") or {}).get("entities") or []
    if not isinstance(entities, list):
        raise ConfigError("rebuild.synapse.entities must be a list", where)
    for i, entity in enumerate(entities):
        if not isinstance(entity, dict) or not _SYN_ID.fullmatch(str(entity.get("id", ""))):
            raise ConfigError("a Synapse entity needs an id like syn60868042", f"{where}: rebuild.synapse.entities[{i}]")
        unknown = sorted(set(entity) - ENTITY_KEYS)
        if unknown:
            raise ConfigError(f"unknown key {unknown[0]}; expected one of {', '.join(sorted(ENTITY_KEYS))}",
                              f"{where}: rebuild.synapse.entities[{i}]")
    sources = (section.get("clinical") or {}).get("sources") or {}
    if not isinstance(sources, dict):
        raise ConfigError("rebuild.clinical.sources must be a mapping NAME: PATH", where)


def _globs(value: Any, key: str, where: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise ConfigError(f"{key} must be a glob or a list of globs", where)


def nnunet_unusable() -> str | None:
    """Why nnU-Net cannot run in this process, or None. Found is not enough: a broken torch only shows on import."""
    from etl.segment.nnunet import nnunet_available

    if not nnunet_available():
        return "not installed"
    try:
        import_whole("nnunetv2.inference.predict_from_raw_data")  # imports torch too
    except Exception as exc:  # any failure to import means: not usable here, and say why
        first = str(exc).splitlines()[0] if str(exc) else ""
        return f"{type(exc).__name__}: {first}".rstrip(": ")
    return None


def command_exists(*words: str) -> bool:
    """Whether `mamamia WORDS...` is a registered command (review prepare arrives in a later version)."""
    import typer.main

    from etl.cli import app

    cmd: Any = typer.main.get_command(app)
    for word in words:
        sub = getattr(cmd, "commands", {}).get(word)
        if sub is None:
            return False
        cmd = sub
    return True


def load_spec(definition: StrPath, work: StrPath, overrides: dict[str, Any] | None = None,
              jobs: int = 1, scheduler: str | None = None) -> RebuildSpec:
    """Read the definition's ``rebuild:`` section (with ``overrides`` merged over it) into stage variables."""
    from etl.release.definition import load_definition
    from etl.yamlfile import load_yaml_mapping

    def_path = Path(definition).resolve()
    work = Path(work).resolve()
    where = str(def_path)
    raw = load_yaml_mapping(def_path, "release definition")
    section = raw.get("rebuild") or {}
    if not isinstance(section, dict):
        raise ConfigError("'rebuild' must be a mapping", f"{where}: rebuild")
    section = deep_merge(section, overrides or {})
    check_section(section, where)
    staged, table = work / "staged", work / TABLE
    defn = load_definition(def_path, staged=[staged], table=table)
    synapse_root = work / "synapse"
    dirs = {"work": work, "synapse": synapse_root, "staged": staged, "dicom": work / "dicom"}

    def path(value: Any, key: str) -> Path | None:
        """A declared path: {work}/{synapse}/{staged}/{dicom} placeholders, $VARS, ~, relative to the definition."""
        if value is None or value == "":
            return None
        text = _PLACEHOLDER.sub(lambda m: str(dirs[m.group(1)]), str(value))
        text = os.path.expanduser(os.path.expandvars(text))
        unset = re.search(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", text)
        if unset:
            raise ConfigError(f"rebuild.{key} uses the unset variable {unset.group(1)}", f"{where}: rebuild.{key}")
        p = Path(text)
        return (p if p.is_absolute() else def_path.parent / p).resolve()

    manifest = path(section.get("manifest"), "manifest")
    if manifest is None:
        raise ConfigError("the definition declares no rebuild.manifest (the cases to rebuild)", f"{where}: rebuild")
    tcia = section.get("tcia") or {}
    syn = section.get("synapse") or {}
    entities: list[dict[str, Any]] = [{"id": str(e["id"]), "include": _globs(e.get("include"), f"rebuild.synapse.entities[{i}].include", where),
                 "optional": bool(e.get("optional", False))}
                for i, e in enumerate(syn.get("entities") or [])]
    masks = section.get("expert_masks") or {}
    mask_entity = str(masks["entity"]) if masks.get("entity") else None
    if mask_entity and mask_entity not in {e["id"] for e in entities}:
        raise ConfigError(f"rebuild.expert_masks.entity {mask_entity} is not among rebuild.synapse.entities",
                          f"{where}: rebuild.expert_masks")
    clinical = section.get("clinical") or {}
    sources = {str(k): path(v, f"clinical.sources.{k}") for k, v in sorted((clinical.get("sources") or {}).items())}
    missing_source = [k for k, v in sources.items() if v is None]
    if missing_source:
        raise ConfigError(f"rebuild.clinical.sources.{missing_source[0]} has no path", f"{where}: rebuild.clinical")
    seg = section.get("segment") or {}
    method = str(seg.get("method") or (raw.get("segmentation") or {}).get("method") or "nnunet")
    if method not in ("nnunet", "ftv"):
        raise ConfigError(f"rebuild.segment.method must be nnunet or ftv, got {method!r}", f"{where}: rebuild.segment")
    fallback = seg.get("fallback")
    if fallback not in (None, "ftv"):
        raise ConfigError(f"rebuild.segment.fallback must be ftv or null, got {fallback!r}", f"{where}: rebuild.segment")
    model = path(seg.get("model"), "segment.model")
    review = section.get("review") or {}
    release = section.get("release") or {}
    release_dir = path(release.get("dir"), "release.dir") or work / "release" / defn.release_id
    notes: list[str] = []

    def segment_choice() -> dict[str, Any]:
        """nnU-Net with the declared model, or the declared FTV fallback (decided when the stage runs: the model
        folder is an output of extract-synapse)."""
        if method == "ftv":
            return {"ftv": True, "model": None, "note": None}
        why = None
        if model is not None and not model.exists():
            why = f"the model folder {model} is not there"
        else:
            unusable = nnunet_unusable()
            if unusable:
                why = f"nnU-Net v2 is not importable ({unusable})"
        if why and fallback == "ftv":
            return {"ftv": True, "model": None, "note": f"{why}: masks come from the declared FTV fallback"}
        return {"ftv": False, "model": str(model) if model else None, "note": None}

    def lazy(key: str) -> Callable[[], Any]:
        return lambda: segment_choice()[key]

    review_wanted = bool(review.get("prepare", False))
    review_available = review_wanted and command_exists("review", "prepare")
    if review_wanted and not review_available:
        notes.append("the definition asks for review prepare, but this version has no `mamamia review prepare`: "
                     "stage left out")
    verify_phi = release.get("verify_phi_from_dicom", True)
    exports = [{"id": e["id"], "out": str(synapse_root / e["id"]), "include": e["include"], "optional": e["optional"]}
               for e in entities]
    variables: dict[str, Any] = {
        "work": str(work), "definition": str(def_path), "profile": defn.profile,
        "name": defn.name, "version": defn.version,
        "manifest": str(manifest), "exclusions": _opt(path(section.get("exclusions"), "exclusions")),
        "cache_tcia": str(work / "cache" / "tcia"), "cache_synapse": str(work / "cache" / "synapse"),
        "dicom": str(dirs["dicom"]), "synapse": str(synapse_root), "staged": str(staged), "table": str(table),
        "splits": str(work / "splits" / SPLITS), "release": str(release_dir),
        "jobs": jobs, "scheduler": scheduler,
        "tcia_api_url": tcia.get("api_url"), "tcia_jobs": tcia.get("jobs"),
        "synapse_endpoint": syn.get("endpoint"), "synapse_jobs": syn.get("jobs"),
        "synapse_entities": entities, "synapse_exports": exports,
        "cache_verify": bool(section.get("cache_verify", False)),
        "cache_link": bool(section.get("cache_link", False)),
        "cache_verify_synapse": bool(section.get("cache_verify", False)) and bool(entities),
        "expert_masks_entity": mask_entity,
        "expert_masks_include": _globs(masks.get("include"), "rebuild.expert_masks.include", where),
        "clinical_sources": {k: str(v) for k, v in sources.items()},
        "clinical_base": _opt(path(clinical.get("base"), "clinical.base")),
        "split_seed": defn.split.seed, "split_test_fraction": defn.split.test_fraction, "split_folds": defn.split.folds,
        "split_min_stratum": defn.split.min_stratum,
        "segment_method": method, "segment_model": _opt(model),
        "segment_ftv": lazy("ftv"), "segment_model_arg": lazy("model"), "segment_note": lazy("note"),
        "segment_scheduler": lambda: scheduler if segment_choice()["ftv"] else None,
        "segment_folds": ",".join(str(int(f)) for f in seg["folds"]) if seg.get("folds") else None,
        "segment_device": seg.get("device"),
        "review_prepare": review_available,
        "release_only_staged": bool(release.get("only_staged", False)),
        "release_report": bool(release.get("report", False)),
        "verify_phi_dicom": str(dirs["dicom"]) if verify_phi else None,
    }
    return RebuildSpec(def_path, work, defn.name, defn.version, variables, notes)


def _opt(p: Path | None) -> str | None:
    return str(p) if p is not None else None
