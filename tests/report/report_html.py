"""Reading a data card back: sections, images and the data-* cells of its tables (stdlib HTML parser)."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser


@dataclass
class Card:
    sections: list[str] = field(default_factory=list)
    images: list[str] = field(default_factory=list)          # src of every <img>
    cells: list[dict[str, str]] = field(default_factory=list)  # data-* attributes + text of every <td data-...>


class _Parser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.card = Card()
        self._cell: dict[str, str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "section":
            self.card.sections.append(a.get("id", ""))
        elif tag == "img":
            self.card.images.append(a.get("src", ""))
        elif tag == "td":
            data = {k[5:]: v for k, v in a.items() if k.startswith("data-")}
            self._cell = {**data, "_text": ""} if data else None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell["_text"] += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None:
            self.card.cells.append(self._cell)
            self._cell = None


def parse(html: str) -> Card:
    p = _Parser()
    p.feed(html)
    return p.card


def counts(card: Card) -> dict[tuple[str, str, str], int]:
    """(variable, dataset or 'overall', label) -> count, from the Cohort and Imaging tables."""
    return {(c["var"], c["dataset"], c["label"]): int(c["count"]) for c in card.cells if "label" in c and "count" in c}
