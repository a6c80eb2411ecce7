"""Overview section: what the input is, how many cases per dataset, how it was built, whether it verifies,
and under which licences it may be used.

Facts come from the release's own provenance.json (tool version, definition, publication date, licences);
a table or staged directory has no provenance, so the licences shown are those of the shipped release
definition (release/v1.yaml), said so. Builds carry no wall-clock time (same inputs, same bytes), so the
only date shown is the definition's ``date_published``.
"""

from __future__ import annotations

from typing import Any

from etl.contracts import PROVENANCE
from etl.report.model import Block, Figure, Section, Table, cell
from etl.report.source import ReportSource
from etl.report.validation import Status


def _definition(src: ReportSource) -> tuple[dict[str, Any], str]:
    if src.kind == "release" and src.provenance.get("definition"):
        return dict(src.provenance["definition"]), PROVENANCE
    from etl.resources import data_path
    from etl.yamlfile import load_yaml_mapping

    return load_yaml_mapping(data_path("release/v1.yaml"), "release definition"), "the shipped release definition release/v1.yaml"


def title(src: ReportSource) -> str:
    defn, _ = _definition(src)
    if src.kind == "release":
        return str(defn.get("title") or src.name)
    return f"Data card of {src.name}"


def section(src: ReportSource, summary: dict[str, Any], status: Status, present: list[str], absent: list[str]) -> Section:
    from etl import __version__
    from etl.report import charts

    defn, defn_from = _definition(src)
    prov = src.provenance
    tool = prov.get("tool") or {}
    counts = dict(summary["overall"].get("dataset", {}))
    sec = Section("overview", "Overview", str(defn.get("description") or "") if src.kind == "release" else "")
    facts: list[tuple[str, str]] = [("input", {"release": "release directory", "staged": "staged directory + table",
                                               "table": "table file"}[src.kind] + f": {src.name}")]
    if src.kind == "release":
        facts += [("release", f"{defn.get('name', '?')} version {defn.get('version', '?')}"),
                  ("orientation profile", str(defn.get("profile", "")))]
        facts.append(("built with", f"{tool.get('name', 'mamamia-etl')} {tool.get('version', '?')}"
                      + (f" (Python {prov['environment'].get('python')})" if prov.get("environment") else "")))
        facts.append(("date published", str(defn.get("date_published") or "not set in the release definition "
                                            "(builds record no wall-clock time, so rebuilding gives the same bytes)")))
    facts.append(("table", f"{src.table_name} (sha256 {src.table_sha256[:16]}...)"))
    facts.append(("cases", f"{summary['n_cases']}" + (" (" + ", ".join(f"{k} {v}" for k, v in counts.items()) + ")" if counts else "")))
    facts.append(("checks", status.text))
    facts.append(("sections", ", ".join(present) + ("; not in this report: " + "; ".join(absent) if absent else "")))
    facts.append(("report made by", f"mamamia-etl {__version__} (`mamamia report`)"))
    sec.blocks.append(Block(table=Table(["", ""], [[cell(k, css="label"), cell(v, fact=k)] for k, v in facts],
                                        css="facts")))
    if counts:
        fig = charts.category_chart("Cases per dataset [dataset]", {"all cases": counts}, list(counts),
                                    label_colours={ds: charts.dataset_colour(ds, i) for i, ds in enumerate(counts)})
        sec.blocks.append(Block(title="Cases per dataset", figure=Figure(fig, charts.FMT, "Cases per dataset")))
    sec.blocks.append(_licences(defn, defn_from, counts))
    return sec


def _licences(defn: dict[str, Any], defn_from: str, counts: dict[str, int]) -> Block:
    collections = defn.get("collections") or {}
    rows = []
    for ds in counts or collections:
        c = collections.get(ds) or {}
        rows.append([cell(ds, css="label"), cell(str(c.get("tcia_collection", "(not in the definition)"))),
                     cell(int(counts.get(ds, 0))), cell(str(c.get("license", "to be determined"))),
                     cell(str(c.get("doi", "")))])
    block = Block(title="Licences", table=Table(["dataset", "TCIA collection", "cases", "licence", "DOI"], rows, css="facts"))
    lic = defn.get("release_license") or {}
    if lic:
        block.notes.append(f"The combined data is distributed under {lic.get('name', '')} ({lic.get('url', '')}), "
                           "the most restrictive licence of its collections; cite every collection you use.")
    if defn.get("citation"):
        block.notes.append(f"Cite: {str(defn['citation']).strip()}")
    block.notes.append(f"Licences as recorded in {defn_from}"
                       + ("; confirm them on each collection's page before publishing."
                          if any((c or {}).get("checked") is False for c in collections.values()) else "."))
    return block
