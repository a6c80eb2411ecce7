"""Reading the project's declarative YAML (schemas, mappings, release definitions) with one kind of error.

Every such file must hold a mapping; a missing file, bad YAML or another shape is a ``ConfigError`` that
names the file and what it was supposed to be, never a parser traceback.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from etl.errors import ConfigError


def load_yaml_mapping(path: str | os.PathLike[str], what: str) -> dict[str, Any]:
    """The mapping at the top of a YAML file (an empty file is an empty mapping)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read {what}: {exc.strerror or exc}", str(path)) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} is not valid YAML: {str(exc).splitlines()[0]}", str(path)) from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{what} must be a YAML mapping", str(path))
    return data
