"""Series UIDs recorded for each case (``convert --series-uids FILE|from-manifest``).

A release manifest names each case's series (``tcia_series_uid``: the pre-contrast series, or the series
holding the whole dynamic); an extract ledger or a curator's list may name every phase series. Either way
the recorded UIDs settle which series are the dynamic (see ``selection.py``), whatever the descriptions say.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from etl.errors import InputUnreadable

FROM_MANIFEST = "from-manifest"
SHIPPED_MANIFEST = "manifests/mama-mia-v1.csv"
UID_COLUMNS = ("series_uid", "tcia_series_uid", "SeriesInstanceUID")  # first present is read
_UID = re.compile(r"^[0-9]+(\.[0-9]+)+$")


def read_series_uids(source: str | Path) -> dict[str, list[str]]:
    """patient id -> recorded series UIDs (file order, no repeats) from a CSV with ``patient_id`` and one of
    ``UID_COLUMNS`` (several rows per patient, or several UIDs in a cell separated by spaces or ';').
    A ``tcia_patient_id`` column, when present, is a second key (TCIA-named case folders)."""
    path = _source_path(source)
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = [h.strip() for h in reader.fieldnames or []]
            column = next((c for c in UID_COLUMNS if c in header), None)
            if "patient_id" not in header or column is None:
                raise InputUnreadable(f"series UID list needs columns patient_id and one of {', '.join(UID_COLUMNS)}",
                                      str(path))
            out: dict[str, list[str]] = {}
            for n, row in enumerate(reader, start=2):
                clean = {(k or "").strip(): (v or "").strip() for k, v in row.items() if isinstance(v, str)}
                uids = [u for u in re.split(r"[\s;]+", clean.get(column, "")) if u]
                bad = [u for u in uids if not _UID.match(u)]
                if bad:
                    raise InputUnreadable(f"not a DICOM UID: {bad[0][:80]!r}", f"{path} row {n} column {column}")
                for key in {clean.get("patient_id", ""), clean.get("tcia_patient_id", "")} - {""}:
                    have = out.setdefault(key, [])
                    have.extend(u for u in uids if u not in have)
            return out
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputUnreadable(f"cannot read the series UID list: {exc}", str(path)) from exc


def _source_path(source: str | Path) -> Path:
    if str(source) == FROM_MANIFEST:
        from etl.resources import data_path

        return data_path(SHIPPED_MANIFEST)
    return Path(source)
