"""Assemble the data card: load the input, compute every section, render one HTML text.

Order matters for one reason: the Overview states the verify / validation status and which sections are
left out, so it is made last and put first. The text depends only on the input's content (never on its
absolute path, the clock or the machine), so the same input gives the same bytes; `release build
--report` relies on that for SHA256SUMS.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from etl.report.model import Section
from etl.types import StrPath

log = logging.getLogger("etl.report")

VERIFY_MODES = ("full", "quick", "build", "none")


def build_report(source: StrPath, *, table: StrPath | None = None, gallery: int | None = None, seed: int = 0,
                 verify: str = "full") -> str:
    """The HTML text of the data card of ``source`` (release directory, staged directory, or table file).

    ``gallery``: number of gallery cases (default: one per dataset and view); ``seed`` chooses them.
    ``verify``: ``full`` runs `release verify` on a release (re-hashing every file), ``quick`` skips the
    re-hashing, ``build`` states that `release build` verified it, ``none`` checks the schema only.
    """
    from etl.errors import ConfigError
    from etl.report import cohort, gallery as gallery_mod, overview, page, segmentations, splits, validation
    from etl.report.source import load_source
    from etl.use.summary import summarize

    if verify not in VERIFY_MODES:
        raise ConfigError(f"unknown verify mode {verify!r}; use one of {', '.join(VERIFY_MODES)}", "verify")
    if gallery is not None and gallery < 0:
        raise ConfigError("--gallery must be 0 or more", "--gallery")
    t0 = time.monotonic()
    src = load_source(source, table)
    log.info("reading %s %s: %d rows", src.kind, src.name, len(src.table))
    sections: list[Section] = []
    absent: list[str] = []
    if src.coerce_error is None:
        summary = summarize(src.table)
        cohort_sec, imaging_sec = cohort.sections(src.table, summary)
        sections += [cohort_sec, imaging_sec]
    else:
        summary = {"n_cases": len(src.table), "overall": {}, "by_dataset": {}}
        absent.append(f"cohort and imaging charts (the table cannot be typed: {src.coerce_error})")
    log.info("cohort and imaging drawn (%.1f s)", time.monotonic() - t0)
    split_sec = splits.section(src) if src.coerce_error is None else None
    if split_sec is not None:
        sections.append(split_sec)
    else:
        absent.append("splits (no split in this input)")
    if src.root is not None:
        seg_sec, _ = segmentations.section(src)
        if seg_sec is not None:
            sections.append(seg_sec)
        else:
            absent.append("segmentations (no QC, ratings or corrections files)")
        gal_sec, why = gallery_mod.section(src, gallery, seed) if gallery != 0 else (None, "gallery: --gallery 0")
        if gal_sec is not None:
            sections.append(gal_sec)
        else:
            absent.append(str(why))
    else:
        absent += ["segmentations and gallery (a table has no masks or images)"]
    log.info("splits, segmentations, gallery drawn (%.1f s)", time.monotonic() - t0)
    val_sec, status = validation.section(src, verify=verify)
    sections.append(val_sec)
    log.info("validation done (%.1f s)", time.monotonic() - t0)
    present = ["Overview", *[s.title for s in sections]]
    sections.insert(0, overview.section(src, summary, status, present, absent))
    title = overview.title(src)
    subtitle = (f"{src.name}: {summary['n_cases']} cases"
                + (" (" + ", ".join(f"{k} {v}" for k, v in summary["overall"].get("dataset", {}).items()) + ")"
                   if summary["overall"].get("dataset") else "") + f". {status.text}.")
    from etl import __version__

    footer = (f"Data card made by mamamia-etl {__version__} (`mamamia report`) from {src.name}; figures drawn with "
              "matplotlib in the Okabe-Ito colour-blind-safe palette; everything is inline (no network needed).")
    html = page.render(title, subtitle, sections, footer)
    log.info("page rendered: %d bytes (%.1f s)", len(html.encode()), time.monotonic() - t0)
    return html


def write_report(source: StrPath, out: StrPath, *, table: StrPath | None = None, gallery: int | None = None,
                 seed: int = 0, verify: str = "full") -> Path:
    """Write the data card to ``out`` atomically (temp file + rename); returns the path. The keyword
    arguments are ``build_report``'s."""
    from etl.atomic import write_text

    html = build_report(source, table=table, gallery=gallery, seed=seed, verify=verify)
    return write_text(out, html)
