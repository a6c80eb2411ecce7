"""Step 3 of ``release build``, the tables: segmentation QC, the review outputs (ratings, corrections), the
typed table and its xlsx drop-in, and the split in both forms (CSV and nnU-Net ``splits_final.json``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from etl.contracts import NNUNET_SPLITS, QC, SPLITS, TABLE, TABLE_XLSX
from etl.release.casefiles import CaseFiles, write_text_file
from etl.release.definition import ReleaseDefinition
from etl.release.inputs import ReleaseInputs


def write_tables(defn: ReleaseDefinition, inp: ReleaseInputs, files: CaseFiles, tmp: Path) -> dict[str, Any]:
    """Write the release's tables into ``tmp``; returns what provenance records about the review inputs."""
    from etl.release import qc
    from etl.release.quality import write_review_files  # ratings + expert corrections (mamamia review)
    from etl.release.tableio import write_table
    from etl.split import split_csv_text

    if inp.staged_qc is not None:
        qc.write_qc(qc.carried_over(inp.staged_qc, inp.ids), tmp / QC)
    elif files.qc_rows:
        qc.write_qc(qc.qc_frame(files.qc_rows), tmp / QC)
    review = write_review_files(defn, inp.table, tmp, files.known)
    write_table(inp.table, tmp / TABLE)
    write_table(inp.table, tmp / TABLE_XLSX)
    write_text_file(tmp / SPLITS, split_csv_text(inp.split))
    write_text_file(tmp / NNUNET_SPLITS, json.dumps(inp.split.nnunet_splits(), indent=2) + "\n")
    return review
