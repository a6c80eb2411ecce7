"""The imaging variables of a case, read from its DICOM headers by the rules in schemas/imaging_headers.yaml.

The rules are data so that a new vendor spelling is a YAML line, not a branch. Values are typed (JSON
numbers, lists, strings) under the v1 column names; ``published_text`` turns the list/date values into
the v1 table's text form (``"[0.7031, 0.7031]"``, ``"[0, 584, 714]"``, ``"2002/10/26"``).
Missing means missing: a tag that is absent or empty gives null, never 0 or "".
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

from etl.errors import ConfigError
from etl.transform.dicom import Inventory, Phase
from etl.transform.dicom.tags import tag_values
from etl.transform.imaging_rules import RULES_FILE, rules_section
from etl.transform.nifti import view_of

IMAGING_VARIABLES = (
    "view", "bilateral_mri", "num_phases", "fat_suppressed", "field_strength", "image_rows", "image_columns",
    "num_slices", "pixel_spacing", "slice_thickness", "site", "manufacturer", "scanner_model", "high_bit",
    "window_center", "window_width", "echo_time", "repetition_time", "acquisition_times", "acquisition_date",
    "tcia_series_uid", "weight", "patient_size", "bmi_group",
)


def variable_rules() -> dict[str, dict[str, Any]]:
    rules = dict(rules_section("variables") or {})
    missing = [v for v in IMAGING_VARIABLES if v not in rules]
    if missing:
        raise ConfigError(f"imaging header rules missing: {', '.join(missing)}", RULES_FILE)
    return rules


def _typed(texts: list[str], kind: str, spec: dict[str, Any]) -> Any:
    first = texts[0]
    if kind == "str":
        for m in spec.get("map") or []:
            if re.search(m["match"], first):
                return m["value"]
        return first
    if kind == "int":
        return int(float(first))
    if kind == "float":
        x = float(first)
        scale = spec.get("scale_above")
        if scale and x > float(scale["threshold"]):
            x *= float(scale["factor"])
        if spec.get("positive") and not x > 0:
            return None
        return x
    if kind == "float_list":
        return [float(t) for t in texts]
    if kind == "date":
        digits = re.sub(r"\D", "", first)
        if len(digits) != 8:
            return None
        return f"{digits[:4]}/{digits[4:6]}/{digits[6:]}"
    raise ConfigError(f"unknown type {kind!r}", RULES_FILE)


def _from_tags(ds: Any, spec: dict[str, Any]) -> Any:
    for tag in spec["tags"]:
        texts = tag_values(ds, tag)
        if texts:
            try:
                return _typed(texts, spec.get("type", "str"), spec)
            except ValueError:
                continue  # unparsable value: try the next tag, else missing
    return None


def _from_rules(ds: Any, rules: list[dict[str, Any]]) -> Any:
    for rule in rules:
        texts = tag_values(ds, rule["tag"])
        if "any_of" in rule:
            wanted = {str(x).upper() for x in rule["any_of"]}
            fired = any(t.upper() in wanted for t in texts)
        elif "match" in rule:
            fired = any(re.search(rule["match"], t) for t in texts)
        elif rule.get("present"):
            fired = bool(texts)
        else:
            raise ConfigError(f"rule for {rule['tag']} needs any_of, match or present", RULES_FILE)
        if fired:
            return rule["value"]
    return None


def _acquisition_times(phases: list[Phase]) -> list[int] | None:
    if any(ph.time is None for ph in phases):
        return None
    t0 = phases[0].time
    return [int(round(ph.time - t0)) for ph in phases]  # type: ignore[operator]


def bmi_group(weight: float | None, size_m: float | None, spec: dict[str, Any]) -> str | None:
    """v1 rule: BMI from weight and size, the default size when size is unknown; no weight, no group."""
    if weight is None:
        return None
    size = size_m if size_m else float(spec.get("default_size_m", 1.65))
    bmi = weight / size**2
    for b in spec["bins"]:
        if bmi < float(b["below"]):
            return str(b["value"])
    return None


DERIVED: dict[str, Callable[[Inventory, dict[str, Any]], Any]] = {
    "view": lambda inv, out: view_of(inv.phases[0].affine),
    "num_phases": lambda inv, out: len(inv.phases),
    "num_slices": lambda inv, out: len(inv.phases[0].slices),
    "acquisition_times": lambda inv, out: _acquisition_times(inv.phases),
    "tcia_series_uid": lambda inv, out: inv.phases[0].series_uid,
}


def extract(inv: Inventory) -> dict[str, Any]:
    """The imaging variables of an inventoried case, in v1 column order."""
    rules = variable_rules()
    ds = inv.phases[0].reference
    out: dict[str, Any] = {}
    deferred = []
    for name in IMAGING_VARIABLES:
        spec = rules[name]
        if "derive" in spec:
            if spec["derive"] in DERIVED:
                out[name] = DERIVED[spec["derive"]](inv, out)
            else:
                deferred.append(name)
        elif "rules" in spec:
            out[name] = _from_rules(ds, spec["rules"])
        elif "tags" in spec:
            out[name] = _from_tags(ds, spec)
        else:
            raise ConfigError(f"variable {name} has no tags, rules or derive", RULES_FILE)
    for name in deferred:
        spec = rules[name]
        if spec["derive"] == "bmi_group":
            out[name] = bmi_group(out.get("weight"), out.get("patient_size"), spec)
        else:
            raise ConfigError(f"unknown derivation {spec['derive']!r} for {name}", RULES_FILE)
    return out


def published_text(values: dict[str, Any]) -> dict[str, Any]:
    """The v1 table's text forms for list-valued variables (``"[0.7031, 0.7031]"``, ``"[0, 584]"``)."""
    out = dict(values)
    for key in ("pixel_spacing", "acquisition_times"):
        v = out.get(key)
        if isinstance(v, list):
            out[key] = "[" + ", ".join(repr(x) if isinstance(x, float) else str(x) for x in v) + "]"
    return out


def same_value(a: Any, b: Any, rel: float = 1e-9) -> bool:
    """Equality as the round trip needs it: floats to rounding, text without padding, missing == missing."""
    def missing(x: Any) -> bool:
        return x is None or (isinstance(x, float) and math.isnan(x)) or (type(x).__name__ == "NAType")

    if missing(a) or missing(b):
        return missing(a) and missing(b)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same_value(x, y, rel) for x, y in zip(a, b))
    if isinstance(a, str) or isinstance(b, str):
        return str(a).strip() == str(b).strip()
    try:
        return math.isclose(float(a), float(b), rel_tol=rel, abs_tol=1e-12)
    except (TypeError, ValueError):
        return a == b
