"""A release definition (``release/*.yaml``) read into one typed object.

Paths in a definition are relative to the definition file unless absolute; ``$VARS`` and ``~`` are
expanded. Command-line overrides (``--staged``, ``--table``, ``--previous``) replace the file's sources so
a curator or the demo can build without editing YAML; the effective values are what provenance records.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from etl.yamlfile import load_yaml_mapping
from etl.errors import ConfigError
from etl.layout import Layout
from etl.split import SplitSettings

log = logging.getLogger("etl.release.definition")

# Top-level keys a definition may have; anything else is most likely a typo (``previus:``) and is warned about.
KNOWN_KEYS = frozenset({
    "name", "version", "profile", "title", "description", "homepage", "sources", "cases", "imaging_from_staged",
    "previous", "date_published", "split", "release_license", "citation", "collections", "naming", "segmentation",
    "keywords", "creators", "publisher", "url", "anonymize_raters",
    "rebuild",  # read by `mamamia rebuild` (etl/rebuild/spec.py validates it)
})
# What each collection entry must record (LICENSES.md and croissant.json are generated from it).
COLLECTION_KEYS = ("license", "license_url", "citation")

# Orientation code each voxel axis points to (nibabel aff2axcodes), per profile and acquisition view.
PROFILES: dict[str, dict[str, str]] = {
    "mama-mia-v1": {"axial": "LPS", "sagittal": "RAS"},
    "challenge": {"axial": "LAS", "sagittal": "PSR"},
}

_UNSET_VAR = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?")


@dataclass
class ReleaseDefinition:
    path: Path
    raw: dict[str, Any]
    name: str
    version: str
    profile: str
    staged: list[Path]
    table: Path | None
    caches: list[Path]
    previous: Path | None
    cases: str
    imaging_from_staged: bool
    split: SplitSettings
    split_file: Path | None = None
    collections: dict[str, dict[str, Any]] = field(default_factory=dict)
    exclusions: Path | None = None  # extra exclusions CSV on top of the shipped manifests/exclusions.csv

    @property
    def release_id(self) -> str:
        return f"{self.name}-{self.version}"

    @property
    def orientation(self) -> dict[str, str]:
        return PROFILES[self.profile]

    def layout(self, root: str | os.PathLike[str]) -> Layout:
        """The naming templates (and nnU-Net case id) of this definition, rooted at ``root``."""
        return Layout.from_definition(Path(root), self.path)

    def portable(self, path: Path | None) -> str | None:
        """How the release names an input: relative to this definition's folder when inside it, else by
        name; never an absolute path of the build machine (etl/release/machine_paths.py)."""
        from etl.release.machine_paths import portable

        return None if path is None else portable(path, self.path.parent)

    def effective(self) -> dict[str, Any]:
        """The definition as built: raw YAML with sources/previous replaced by the inputs actually used
        (command-line overrides included), each named by ``portable``."""
        out = dict(self.raw)
        out["sources"] = {
            **{k: v for k, v in dict(out.get("sources") or {}).items()
               if k not in ("staged", "table", "caches", "exclusions")},
            "staged": [self.portable(p) for p in self.staged],
            "table": self.portable(self.table),
            "caches": [self.portable(p) for p in self.caches],
            "exclusions": self.portable(self.exclusions),
        }
        out["previous"] = self.portable(self.previous)
        out["cases"] = self.cases
        if self.split_file:
            out["split"] = {**dict(out.get("split") or {}), "file": self.portable(self.split_file)}
        return out


def resolve_path(value: str | os.PathLike[str], base: Path, key: str, where: Path) -> Path:
    text = os.path.expanduser(os.path.expandvars(str(value)))
    unset = _UNSET_VAR.search(text)
    if unset:
        raise ConfigError(
            f"{key} uses the unset variable {unset.group(1)}; set it or override the source on the command line",
            f"{where}: {key}",
        )
    p = Path(text)
    return (p if p.is_absolute() else base / p).resolve()


def load_definition(
    path: str | os.PathLike[str],
    staged: Sequence[str | os.PathLike[str]] | None = None,
    table: str | os.PathLike[str] | None = None,
    previous: str | os.PathLike[str] | None = None,
    cases: str | None = None,
    split_file: str | os.PathLike[str] | None = None,
) -> ReleaseDefinition:
    """Read and check a release definition; command-line overrides win over the file's sources."""
    path = Path(path).resolve()
    raw = load_yaml_mapping(path, "release definition")
    base = path.parent
    for key in ("name", "version"):
        if not raw.get(key):
            raise ConfigError(f"release definition lacks '{key}'", str(path))
    unknown = sorted(str(k) for k in raw if k not in KNOWN_KEYS)
    if unknown:
        log.warning("release definition %s: unknown key(s) %s are ignored", path, ", ".join(unknown))
    name, version = str(raw["name"]), str(raw["version"])
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+-]*", version):
        raise ConfigError(f"name/version must be plain identifiers, got {name!r} / {version!r}", str(path))
    profile = str(raw.get("profile") or "mama-mia-v1")
    if profile not in PROFILES:
        raise ConfigError(f"unknown orientation profile {profile!r}; expected one of {', '.join(PROFILES)}", f"{path}: profile")
    sources = raw.get("sources") or {}
    if not isinstance(sources, dict):
        raise ConfigError("'sources' must be a mapping", f"{path}: sources")

    if staged:
        staged_paths = [Path(p).resolve() for p in staged]
    else:
        listed = sources.get("staged") or []
        listed = [listed] if isinstance(listed, str) else list(listed)
        staged_paths = [resolve_path(p, base, "sources.staged", path) for p in listed]
    if not staged_paths:
        raise ConfigError("no staged directory given (sources.staged or --staged)", str(path))

    if table is not None:
        table_path: Path | None = Path(table).resolve()
    elif sources.get("table"):
        table_path = resolve_path(sources["table"], base, "sources.table", path)
    else:
        table_path = None

    exclusions_path = resolve_path(sources["exclusions"], base, "sources.exclusions", path) if sources.get("exclusions") else None
    if exclusions_path is not None and not exclusions_path.is_file():
        raise ConfigError("exclusions file not found", f"{path}: sources.exclusions ({exclusions_path})")

    caches = []
    for i, p in enumerate(sources.get("caches") or []):
        unset = _UNSET_VAR.search(os.path.expandvars(str(p)))
        if unset:
            # Caches are informational (provenance lists them), so an unset variable must not block a build;
            # but a cache that vanished from provenance without a word would be a quiet drop: name it.
            log.warning("release definition %s: sources.caches[%d] (%s) uses the unset environment variable %s; "
                        "that cache is left out of provenance", path, i, p, unset.group(1))
            continue
        caches.append(resolve_path(p, base, "sources.caches", path))

    if previous is not None:
        prev_path: Path | None = Path(previous).resolve()
    elif raw.get("previous"):
        prev_path = resolve_path(raw["previous"], base, "previous", path)
    else:
        prev_path = None

    mode = cases or str(raw.get("cases") or "table")
    if mode not in ("table", "staged"):
        raise ConfigError(f"cases must be 'table' or 'staged', got {mode!r}", f"{path}: cases")
    if raw.get("split") is not None and not isinstance(raw.get("split"), dict):
        raise ConfigError("'split' must be a mapping", f"{path}: split")
    split_raw = dict(raw.get("split") or {})
    if split_file is not None:
        split_path: Path | None = Path(split_file).resolve()
    elif split_raw.get("file"):
        split_path = resolve_path(split_raw["file"], base, "split.file", path)
    else:
        split_path = None
    split_raw.pop("file", None)
    if split_path is not None and not split_path.is_file():
        raise ConfigError("split file not found", f"{path}: split.file ({split_path})")
    try:
        split = SplitSettings.from_mapping(split_raw)
    except ConfigError as exc:
        raise ConfigError(f"bad split settings: {exc.what}", f"{path}: {exc.where or 'split'}") from exc
    if not raw.get("collections"):
        raise ConfigError("release definition lacks 'collections' (licence and citation of each source collection)",
                          f"{path}: collections")
    collections = raw["collections"]
    if not isinstance(collections, dict):
        raise ConfigError("'collections' must be a mapping", f"{path}: collections")
    for ds, entry in collections.items():
        if not isinstance(entry, dict):
            raise ConfigError("a collection entry must be a mapping (license, license_url, citation, ...)",
                              f"{path}: collections.{ds}")
        lacking = [k for k in COLLECTION_KEYS if not entry.get(k)]
        if lacking:
            raise ConfigError(f"collection {ds} lacks {', '.join(lacking)}", f"{path}: collections.{ds}")
    return ReleaseDefinition(
        path=path,
        raw=raw,
        name=name,
        version=version,
        profile=profile,
        staged=staged_paths,
        table=table_path,
        caches=caches,
        exclusions=exclusions_path,
        previous=prev_path,
        cases=mode,
        imaging_from_staged=bool(raw.get("imaging_from_staged", True)),
        split=split,
        split_file=split_path,
        collections={str(k): dict(v or {}) for k, v in collections.items()},
    )


def check_collections(defn: ReleaseDefinition, datasets: list[str]) -> None:
    """Every collection in the release needs its licence and citation in the definition."""
    missing = [ds for ds in datasets if ds not in defn.collections]
    if missing:
        raise ConfigError(f"no licence/citation for collection(s) {', '.join(missing)} in the release definition",
                          f"{defn.path}: collections.{missing[0]}")
