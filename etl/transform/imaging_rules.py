"""schemas/imaging_headers.yaml, read once: the imaging variables' tag rules, the orientation profiles and
the series filter. One loader, so the writer, the header reader and the series filter see the same file."""

from __future__ import annotations

import functools
from typing import Any

RULES_FILE = "schemas/imaging_headers.yaml"


@functools.lru_cache(maxsize=1)
def imaging_rules() -> dict[str, Any]:
    """The whole rules file as a mapping (cached: it is package data and does not change during a run)."""
    from etl.resources import data_path
    from etl.yamlfile import load_yaml_mapping

    return load_yaml_mapping(data_path(RULES_FILE), "imaging header rules")


def rules_section(name: str) -> Any:
    """One top-level section of the rules file (None when absent)."""
    return imaging_rules().get(name)
