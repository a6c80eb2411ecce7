"""The report's HTML: one Jinja2 template with the CSS inlined and every figure a data: URI.

Why nothing external: the data card must open from a USB stick on a machine with no network, and a
browser must fetch nothing to show it (no font, no script, no stylesheet), so the page is self-contained
by construction. Autoescaping is on: values from the table (site names, free text) are never markup.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from etl.report.model import Section

if TYPE_CHECKING:
    from markupsafe import Markup

TEMPLATES = Path(__file__).with_name("templates")


def render(title: str, subtitle: str, sections: list[Section], footer: str) -> str:
    from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

    from etl import __version__

    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(["html", "j2"]),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters["code"] = code_spans
    css = (TEMPLATES / "report.css").read_text(encoding="utf-8")
    return env.get_template("report.html.j2").render(title=title, subtitle=subtitle, sections=sections,
                                                     footer=footer, css=css, version=__version__)


def code_spans(text: str) -> Markup:
    """Escaped text with `command` spans set as <code> (the sections' prose names commands that way)."""
    import re

    from markupsafe import Markup, escape

    return Markup(re.sub(r"`([^`]+)`", r"<code>\1</code>", str(escape(text))))
