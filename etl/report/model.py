"""The report as plain data (sections of blocks: a figure, a table, a note), rendered by ``page.py``.

Why a model between the numbers and the HTML: the sections are computed and tested as data (a cohort
table cell carries the variable, dataset and label it counts, so a test can compare it with `mamamia
summary --format json`), and the template only lays them out.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from etl.yamlfile import load_yaml_mapping

MIME = {"svg": "image/svg+xml", "png": "image/png"}


@dataclass(frozen=True)
class Cell:
    text: str
    data: dict[str, str] = field(default_factory=dict)   # rendered as data-* attributes
    numeric: bool = False
    css: str = ""


@dataclass
class Table:
    headers: list[str]
    rows: list[list[Cell]]
    caption: str = ""
    css: str = ""


@dataclass
class Figure:
    data: bytes
    fmt: str               # svg or png
    alt: str
    css: str = "chart"

    @property
    def uri(self) -> str:
        return f"data:{MIME[self.fmt]};base64,{base64.b64encode(self.data).decode('ascii')}"


@dataclass
class Block:
    title: str = ""
    figure: Figure | None = None
    table: Table | None = None
    notes: list[str] = field(default_factory=list)
    tiles: list[dict[str, Any]] = field(default_factory=list)   # gallery / thumbnail tiles: figure + caption
    id: str = ""


@dataclass
class Section:
    id: str
    title: str
    intro: str = ""
    blocks: list[Block] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def cell(value: Any, css: str = "", **data: Any) -> Cell:
    """A table cell; numbers are right-aligned, ``data`` becomes data-* attributes."""
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    return Cell(str(value), {k: str(v) for k, v in data.items()}, numeric, css)


@lru_cache(maxsize=1)
def config() -> dict[str, Any]:
    """The declarative part of the report (``etl/report/report.yaml``)."""
    return load_yaml_mapping(Path(__file__).with_name("report.yaml"), "report configuration")
