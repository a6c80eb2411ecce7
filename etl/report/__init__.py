"""`mamamia report`: a self-contained HTML data card of a release, a staged directory or a table.

    >>> from etl.report import build_report, write_report
    >>> html = build_report("releases/mama-mia-1.0.0")           # str, same input -> same text
    >>> write_report("clinical_and_imaging_info.xlsx", "report.html")

Sections: Overview, Cohort, Imaging, Splits, Segmentations, Gallery, Validation; the ones an input cannot
fill (a table has no images) are left out and the Overview says why.
"""

from __future__ import annotations

from etl.report.build import build_report, write_report

__all__ = ["build_report", "write_report"]
