"""Paths of the build machine: keep them out of what a release records, and find them if one slips in.

A release is published; an absolute path in it tells the world the curator's user name and folder layout,
and makes two builds of the same inputs in two folders differ. So:

- ``portable(path, base)`` is how provenance names an input: relative to the release definition's folder
  when the input lies inside it, else by its name alone (its sha256 says which content it was);
- ``scrub(doc, base, roots)`` rewrites every path-like string of a provenance document that way, also
  paths embedded in free text (stage-ledger messages), so fields added by other stages are covered too;
- ``find_machine_paths(text, roots)`` is the ``release verify`` rule: the literal folders of this build
  (the release's own location and its parent, the definition's folder, the staged folders, $HOME) and the
  places every machine keeps per-user or temporary files (``MACHINE_PREFIXES``).

Ordinary text is not a path: a match must start at a word boundary that is not part of a URL, a date or a
fraction (``https://host/home/x``, ``2020/01/02``, ``and/or``, ``mm/s`` never match).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from etl.types import StrPath

# Where a machine keeps per-user and temporary files (POSIX, macOS, Windows); a path starting there is
# specific to the machine that wrote it.
MACHINE_PREFIXES: tuple[str, ...] = (
    r"/home/[^/\s]+",
    r"/Users/[^/\s]+",
    r"/root/[^/\s]",
    r"/tmp/\S",
    r"/var/tmp/\S",
    r"/var/folders/",
    r"/private/(?:tmp|var)/",
    r"/mnt/[^/\s]+",
    r"/media/[^/\s]+",
    r"/run/user/",
    r"/scratch/[^/\s]+",
    r"[A-Za-z]:[\\/]+(?:Users|Documents and Settings|Windows[\\/]+Temp)[\\/]+[^\\/\s]+",
)
# a path starts after a separator, never inside a word, a URL, a number or another path
_START = r"(?<![\w.~:/\\%$-])"
_TAIL = r"[^\s\"'<>|,;()\[\]{}]*"
_MACHINE = re.compile(_START + "(?:" + "|".join(MACHINE_PREFIXES) + ")" + _TAIL)
_FILE_URL = re.compile(r"file://(?=/|[A-Za-z]:)", re.IGNORECASE)
# a whole string that is an absolute path (POSIX or Windows drive), for scrubbing recorded values
_ABSOLUTE = re.compile(r"(?:/(?!/)|[A-Za-z]:[\\/])[^\s\"'<>|]*")
MIN_ROOT_PARTS = 2  # "/data" alone is too common a word to flag; "/data/curation" is a folder of this machine


def _norm(path: StrPath) -> str:
    return str(path).rstrip("/\\") or str(path)


def machine_roots(*paths: StrPath | None) -> tuple[str, ...]:
    """Absolute folders of this build to search for literally: the given ones and $HOME, each also in its
    resolved form; roots with fewer than ``MIN_ROOT_PARTS`` components are left out (too general)."""
    found: set[str] = set()
    for p in [*paths, os.environ.get("HOME"), os.environ.get("USERPROFILE")]:
        if not p:
            continue
        for form in {_norm(p), _norm(os.path.realpath(p))}:
            pure = PureWindowsPath(form) if re.match(r"[A-Za-z]:[\\/]", form) else PurePosixPath(form)
            if pure.is_absolute() and len(pure.parts) > MIN_ROOT_PARTS:
                found.add(form)
    return tuple(sorted(found, key=lambda r: (-len(r), r)))  # longest first: replace the most specific


def _root_pattern(root: str) -> re.Pattern[str]:
    body = re.escape(root)
    if "\\" in root:  # a Windows root may be written with either separator
        body = body.replace(re.escape("\\"), r"[\\/]")
    return re.compile(_START + body + r"(?![^/\\\s\"'<>|,;()\[\]{}])" + _TAIL)


def find_machine_paths(text: str, roots: Iterable[str] = ()) -> list[str]:
    """Absolute paths of a build machine in ``text``: under one of ``roots``, or under a per-user or
    temporary folder (``MACHINE_PREFIXES``); each returned once, in order of appearance."""
    if "/" not in text and "\\" not in text:
        return []
    text = _FILE_URL.sub(" ", text)
    hits: list[tuple[int, str]] = [(m.start(), m.group(0)) for m in _MACHINE.finditer(text)]
    for root in roots:
        hits += [(m.start(), m.group(0)) for m in _root_pattern(root).finditer(text)]
    seen: dict[str, None] = {}
    for _, path in sorted(hits):
        seen.setdefault(path.rstrip("."), None)
    return list(seen)


def portable(path: StrPath, base: Path, anchors: Iterable[Path] = ()) -> str:
    """How a release names an input path: relative to ``base`` (the definition's folder) when inside it;
    inside one of ``anchors`` (the staged folders) as ``<anchor name>/<relative path>``; else its name alone.
    Never absolute, so the same inputs in another folder give the same text."""
    text = str(path)
    if re.match(r"[A-Za-z]:[\\/]", text) and os.sep == "/":  # a Windows path recorded by another machine
        return PureWindowsPath(text).name
    p = Path(os.path.abspath(os.path.expanduser(text)))
    candidates = (p, Path(os.path.realpath(p)))
    for b in (base, Path(os.path.realpath(base))):
        for c in candidates:
            if c.is_relative_to(b):
                return c.relative_to(b).as_posix()
    for anchor in anchors:
        for a in (anchor, Path(os.path.realpath(anchor))):
            for c in candidates:
                if c.is_relative_to(a):
                    return "/".join([portable(a, base), *c.relative_to(a).parts])
    return p.name


def _scrub_text(text: str, base: Path, roots: tuple[str, ...], anchors: tuple[Path, ...]) -> str:
    if _ABSOLUTE.fullmatch(text) and not text.startswith("//") and len(re.split(r"[\\/]+", text.strip("/\\"))) > 1:
        return portable(text, base, anchors)
    for found in find_machine_paths(text, roots):
        text = text.replace(found, portable(found, base, anchors))
    return text


def scrub(node: Any, base: Path, roots: Iterable[str] = (), anchors: Iterable[Path] = ()) -> Any:
    """A JSON-like document with every absolute path made ``portable`` (whole values and paths inside text).

    For provenance: what a stage recorded about its inputs stays readable, minus the machine it ran on."""
    roots, anchors = tuple(roots), tuple(anchors)

    def walk(n: Any) -> Any:
        if isinstance(n, str):
            return _scrub_text(n, base, roots, anchors)
        if isinstance(n, dict):
            return {k: walk(v) for k, v in n.items()}
        if isinstance(n, (list, tuple)):
            return [walk(v) for v in n]
        return n

    return walk(node)


def describe(paths: list[str]) -> Iterator[str]:
    """The finding ``release verify`` reports for each path."""
    for p in paths:
        yield (f"absolute path of the build machine {p[:120]!r} (a published release must not name folders of "
               "the machine that built it)")
