"""The series filter: series that share the dynamic's geometry but are not DCE phases (subtractions, maps,
T2, diffusion, derived copies...), named by the ``series_filter`` rules of schemas/imaging_headers.yaml.

Rules are data (one commented regex per line in the YAML) so a new collection's spelling is a YAML edit.
A rule only proposes: the phase selection (``selection.py``) decides, and never lets a rule remove part of
a dynamic.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from etl.errors import ConfigError
from etl.transform.dicom.tags import tag_values
from etl.transform.dicom.model import Slice
from etl.transform.imaging_rules import RULES_FILE, rules_section

_RULE_KEYS = {"name", "tag", "match", "any_of", "unless", "requires_original"}


@dataclass(frozen=True)
class SeriesRule:
    """One ``series_filter`` rule: ignore a series whose ``tag`` matches (see the YAML for the semantics)."""

    name: str
    tag: str
    match: re.Pattern[str] | None = None
    any_of: frozenset[str] = frozenset()
    unless: re.Pattern[str] | None = None
    requires_original: bool = False

    def fires(self, first: Slice) -> bool:
        values = rule_values(first, self.tag)
        text = "\\".join(values)
        if self.unless is not None and self.unless.search(text):
            return False
        if self.match is not None:
            return bool(self.match.search(text))
        return any(v.upper() in self.any_of for v in values)


def rule_values(s: Slice, tag: str) -> list[str]:
    """A tag's values for a rule: ImageType from the inventory's header facts, others from the header."""
    if tag == "ImageType":
        return [t for t in s.image_type if t]
    return tag_values(s.ds, tag)


def series_filter_rules() -> list[SeriesRule]:
    """The ``series_filter`` rules of schemas/imaging_headers.yaml, checked and compiled."""
    where = f"{RULES_FILE}: series_filter"
    section = rules_section("series_filter")
    if section is None:
        return []
    if not isinstance(section, dict) or not isinstance(section.get("rules") or [], list):
        raise ConfigError("series_filter must be a mapping with a list of rules", where)
    unknown = set(section) - {"rules", "phase_words", "pre_contrast"}
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join(sorted(unknown))}", where)
    out = []
    for i, spec in enumerate(section.get("rules") or []):
        if not isinstance(spec, dict) or not spec.get("name") or not spec.get("tag"):
            raise ConfigError(f"rule {i + 1}: needs name and tag", where)
        unknown = set(spec) - _RULE_KEYS
        if unknown:
            raise ConfigError(f"rule {spec['name']}: unknown key(s) {', '.join(sorted(unknown))}", where)
        if ("match" in spec) == ("any_of" in spec):
            raise ConfigError(f"rule {spec['name']}: needs exactly one of match, any_of", where)
        try:
            match = re.compile(str(spec["match"])) if "match" in spec else None
            unless = re.compile(str(spec["unless"])) if spec.get("unless") else None
        except re.error as exc:
            raise ConfigError(f"rule {spec['name']}: bad regex: {exc}", where) from exc
        out.append(SeriesRule(name=str(spec["name"]), tag=str(spec["tag"]), match=match,
                              any_of=frozenset(str(v).upper() for v in spec.get("any_of") or ()), unless=unless,
                              requires_original=bool(spec.get("requires_original"))))
    return out


def filter_series(by_series: dict[str, list[Slice]], rules: list[SeriesRule]) -> dict[str, str]:
    """Series (uid -> rule name) that the rules ignore. Only series with geometry are judged; a
    ``requires_original`` rule fires only beside an ORIGINAL series of the same study and geometry that no
    rule ignores."""
    firsts = {}
    for uid, slices in by_series.items():
        good = [s for s in slices if not s.geometry_error]
        if good:
            firsts[uid] = good[0]
    # an ORIGINAL series that no rule would ignore (a requires_original rule judged without its condition)
    originals = {(s.study_uid, s.signature) for s in firsts.values()
                 if s.image_type[:1] and s.image_type[0].upper() == "ORIGINAL" and not any(r.fires(s) for r in rules)}
    hits: dict[str, str] = {}
    for uid, s in firsts.items():
        for r in rules:  # YAML order: the first rule that fires names the reason
            if r.requires_original and (s.study_uid, s.signature) not in originals:
                continue
            if r.fires(s):
                hits[uid] = r.name
                break
    return hits


@functools.lru_cache(maxsize=4)
def _section_regex(key: str) -> re.Pattern[str] | None:
    section = rules_section("series_filter") or {}
    pattern = section.get(key) if isinstance(section, dict) else None
    if not pattern:
        return None
    try:
        return re.compile(str(pattern))
    except re.error as exc:
        raise ConfigError(f"{key}: bad regex: {exc}", f"{RULES_FILE}: series_filter") from exc


def names_pre_contrast(description: str) -> bool:
    """Does a SeriesDescription call its series the pre-contrast phase ("ax dyn pre", "T1 FS PRE")?"""
    pattern = _section_regex("pre_contrast")
    return bool(pattern and pattern.search(description))


def description_family(description: str) -> str | None:
    """A SeriesDescription without its phase words: what the series of one dynamic acquisition share
    ("Ax 3D T1 NON FS pre" and "Ax 3D T1 NON FS post 2" -> "ax 3d t1 non fs"). None without a description.
    """
    if not description.strip():
        return None
    words = _section_regex("phase_words")
    tokens = [t for t in re.split(r"[^a-z0-9]+", description.lower()) if t]
    return " ".join(t for t in tokens if words is None or not words.match(t))
