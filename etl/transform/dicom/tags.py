"""Tag values as the converter reads them: top level, else the Enhanced MR functional groups; text cleaned.

One reader for the inventory (multi-frame expansion), the series filter and the imaging variables. Header
text comes from outside (scanners, anonymizers, archives): control characters and NULs are removed and
absurd lengths refused, with a warning naming the tag, before a value reaches a table, a log or a file.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from etl.errors import DicomError

log = logging.getLogger("etl.transform.dicom")


def group_value(groups: list[Any], key: str, seq: str | None = None) -> Any:
    """``key`` in the first item of a functional-group macro (``seq``, or any macro holding it), searched in
    ``groups`` in order (a per-frame item, the shared item); None when no group has it."""
    for grp in groups:
        if grp is None:
            continue
        for elem in grp:
            if elem.VR == "SQ" and elem.value and (seq is None or elem.keyword == seq) and key in elem.value[0]:
                return elem.value[0].get(key)
    return None


def tag_value(ds: Any, tag: str) -> Any:
    """A tag's value: top level, else the shared then the first per-frame functional group (Enhanced MR)."""
    if tag in ds:
        return ds.get(tag)
    groups = [seq[0] for name in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence")
              if name in ds and (seq := ds.get(name))]
    return group_value(groups, tag)


def tag_values(ds: Any, tag: str) -> list[str]:
    """A tag's values as clean stripped strings ([] when absent or empty), functional groups included
    (``clean_text``: control characters removed, absurd lengths refused, with a warning naming the tag)."""
    value = tag_value(ds, tag)
    if value is None:
        return []
    items = list(value) if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue" else [value]
    where_ = str(getattr(ds, "filename", "") or "")
    out = []
    for v in items:
        text = clean_text(str(v), tag, where_) if v is not None else None
        if text:
            out.append(text)
    return out


MAX_TEXT = 1024  # characters: the longest name-like VR (LO) holds 64; a longer value is not a name
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # C0 (NUL, tab, CR, LF, ESC...), DEL, C1


def clean_text(text: str, tag: str, where_: str = "") -> str | None:
    """A header text value fit for a table cell: control characters (NULs included) become spaces; a value
    longer than ``MAX_TEXT`` is refused (None: missing). Both with a warning naming the tag."""
    if len(text) > MAX_TEXT:
        _warn_once(tag, text, f"{where_ or 'DICOM header'}: tag {tag}: value of {len(text)} characters refused "
                              f"(more than {MAX_TEXT}; treated as missing)")
        return None
    if _CONTROL.search(text):
        cleaned = " ".join(_CONTROL.sub(" ", text).split())
        _warn_once(tag, text, f"{where_ or 'DICOM header'}: tag {tag}: control characters removed "
                              f"({repr(text)[:80]} -> {cleaned[:60]!r})")
        return cleaned
    return text.strip()


_warned: set[tuple[str, int]] = set()


def _warn_once(tag: str, text: str, message: str) -> None:
    """One warning per bad value and tag (a series repeats its header in every file)."""
    key = (tag, hash(text))
    if key not in _warned:
        if len(_warned) > 10000:
            _warned.clear()
        _warned.add(key)
        log.warning("%s", message)


def identifier(get: Any, tag: str, path: Path) -> str:
    """A UID or id that groups files: control characters or an absurd length are refused (the file is
    named), since a cleaned identifier could merge or split series."""
    text = str(get(tag) or "").strip()
    if len(text) > MAX_TEXT or _CONTROL.search(text):
        what = f"{len(text)} characters" if len(text) > MAX_TEXT else f"control characters in {repr(text)[:80]}"
        raise DicomError(f"tag {tag}: {what}; refused", str(path))
    return text
