"""Reading the project's declarative YAML (schemas, mappings, release definitions) with one kind of error.

Every such file must hold a mapping; a missing file, bad YAML or another shape is a ``ConfigError`` that
names the file and what it was supposed to be, never a parser traceback.

The files are plain data, and some come from users (mappings, release definitions), so only plain data is
accepted:

* safe loading only: no tag that builds an object (``!!python/object...``, or any tag other than the core
  ``!!str`` ``!!int`` ``!!float`` ``!!bool`` ``!!null`` ``!!seq`` ``!!map``);
* no aliases (``*name``, merge keys ``<<: *name``): a few nested aliases expand exponentially (the "billion
  laughs" of YAML), and none of the shipped files uses one;
* at most ``MAX_BYTES`` per file (the largest shipped file is ~13 KB) and no nesting deep enough to exhaust
  the parser's recursion.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from etl.errors import ConfigError
from etl.types import StrPath

MAX_BYTES = 1 << 20
_CORE = "tag:yaml.org,2002:"
ALLOWED_TAGS = frozenset(_CORE + t for t in ("str", "int", "float", "bool", "null", "seq", "map"))
_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml_mapping(path: StrPath, what: str) -> dict[str, Any]:
    """The mapping at the top of a YAML file (an empty file is an empty mapping)."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise ConfigError(f"{what} is {size} bytes, more than the {MAX_BYTES}-byte limit for a YAML file",
                              str(path))  # fmt: skip
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {what}: {exc.strerror or exc}", str(path)) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{what} is not UTF-8 text ({exc.reason} at byte {exc.start})", str(path)) from exc
    try:
        _check_plain_data(text, what, path)
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader, after the plain-data check
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} is not valid YAML: {str(exc).splitlines()[0]}", str(path)) from exc
    except RecursionError:
        raise ConfigError(f"{what} nests too deeply to be read", str(path)) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{what} must be a YAML mapping", str(path))
    return data


def _check_plain_data(text: str, what: str, path: Path) -> None:
    """Refuse aliases and object-building tags from the event stream, before anything is constructed."""
    for event in yaml.parse(text, Loader=_Loader):
        line = event.start_mark.line + 1 if event.start_mark is not None else "?"
        if isinstance(event, yaml.AliasEvent):
            raise ConfigError(f"{what} uses the YAML alias *{event.anchor} (line {line}); aliases are not accepted "
                              "(they can expand exponentially): write the value out", str(path))  # fmt: skip
        tag: str | None = getattr(event, "tag", None)
        implicit = getattr(event, "implicit", True)
        explicit = not (implicit[0] if isinstance(implicit, tuple) else implicit)
        if tag is not None and explicit and tag not in ALLOWED_TAGS and tag != "!":
            shown = "!!" + tag[len(_CORE):] if tag.startswith(_CORE) else tag
            raise ConfigError(f"{what} uses the YAML tag {shown} (line {line}); only plain data is accepted "
                              "(tags that build objects are refused)", str(path))  # fmt: skip
