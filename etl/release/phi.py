"""Scan a release for DICOM-derived protected health information (PHI).

What is looked for, in every JSON, CSV, Markdown/text, Parquet, xlsx and NIfTI (header text fields and
extensions) file of the release:
- DICOM attribute names that identify a person or exam (PatientName, PatientBirthDate, AccessionNumber,
  ... from the PS3.15 basic confidentiality profile), in any spelling (``PatientBirthDate``,
  ``patient_birth_date``, ``Patient's Birth Date``) and as tags (``(0010,0030)``, ``00100030``);
- DICOM person-name values (``FAMILY^GIVEN``), the form PatientName takes in every DICOM file;
- DICOM header extensions inside NIfTI files (ecode 2 carries a whole DICOM header);
- optionally, the identifying values of the source DICOM files themselves (``source_values(dicom_dir)``),
  searched for literally (whole tokens) in every file;
- absolute paths of the build machine (its per-user and temporary folders, and the literal ``roots`` given:
  the release's own location, the definition's and staged folders, $HOME; see etl/release/machine_paths.py),
  which name the curator and make builds in two folders differ.
A de-identified release needs none of these, so any hit is a problem to look at.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from etl.release.machine_paths import describe, find_machine_paths
from etl.types import StrPath

# keyword -> tag, from DICOM PS3.15 Annex E (attributes that identify a person or an exam)
PHI_ATTRIBUTES: dict[str, str] = {
    "PatientName": "00100010",
    "PatientBirthDate": "00100030",
    "PatientBirthTime": "00100032",
    "PatientAddress": "00101040",
    "PatientTelephoneNumbers": "00102154",
    "PatientMotherBirthName": "00101060",
    "OtherPatientNames": "00101001",
    "OtherPatientIDs": "00101000",
    "PatientBirthName": "00101005",
    "MedicalRecordLocator": "00380010",
    "AccessionNumber": "00080050",
    "ReferringPhysicianName": "00080090",
    "PerformingPhysicianName": "00081050",
    "NameOfPhysiciansReadingStudy": "00081060",
    "OperatorsName": "00081070",
    "RequestingPhysician": "00321032",
    "InstitutionAddress": "00080081",
    "MilitaryRank": "00101080",
}

_NORMALIZED = {re.sub(r"[^a-z]", "", k.lower()): k for k in PHI_ATTRIBUTES}
_TAGS = {t: k for k, t in PHI_ATTRIBUTES.items() if t}
# names in free text: "PatientName", "patient_name", "Patient's Name", "patient birth date", ...
_NAME_IN_TEXT = re.compile(
    r"patient'?s?[\s_\-]*(?:birth[\s_\-]*(?:date|time|name)|name|address|telephone)"
    r"|other[\s_\-]*patient[\s_\-]*(?:names|ids)|accession[\s_\-]*(?:number|no\b)"
    r"|referring[\s_\-]*physician|performing[\s_\-]*physician|operators?'?[\s_\-]*name"
    r"|medical[\s_\-]*record[\s_\-]*locator",
    re.IGNORECASE,
)
_TAG_IN_TEXT = re.compile(r"(?<![\w.])\(?(0010|0008|0038|0032)[,\s]?([0-9A-Fa-f]{4})\)?(?![\w.])")
# DICOM PN value: FAMILY^GIVEN[^MIDDLE...] with letters (de-identified "1001^6657^ISPY1" style ids are digits)
_PERSON_NAME = re.compile(r"\b[A-Za-z][A-Za-z'\-]+\^[A-Za-z][A-Za-z'\-]*(?:\^[A-Za-z'\-]*)*")

TEXT_SUFFIXES = (".csv", ".md", ".txt", ".tsv", ".yaml", ".yml", ".html")


@dataclass(frozen=True)
class PhiHit:
    file: str
    where: str  # key path, line, column or header field
    what: str

    def describe(self) -> str:
        return f"{self.what} at {self.where}"


def key_is_phi(key: str) -> str | None:
    """The DICOM attribute a key names (keyword in any spelling, or its tag), if it is an identifying one."""
    letters = re.sub(r"[^a-z]", "", key.lower()).replace("patients", "patient")
    if letters in _NORMALIZED:
        return _NORMALIZED[letters]
    m = re.fullmatch(r"\s*\(?\s*([0-9a-fA-F]{4})\s*,?\s*([0-9a-fA-F]{4})\s*\)?\s*", key)
    if m:
        return _TAGS.get((m.group(1) + m.group(2)).upper())
    return None


_TOKEN_SPLIT = re.compile(r"[\s,;:\"'()\[\]{}<>|=]+")
MIN_VALUE_LENGTH = 6  # shorter source values ("1001", "F") match too much innocent text


def text_hits(text: str, values: dict[str, str] | None = None, roots: tuple[str, ...] = ()) -> Iterator[str]:
    """Descriptions of PHI-looking content in a string; ``values`` = known source PHI value -> attribute,
    ``roots`` = absolute folders of the build machine searched for literally."""
    if values:
        for token in {text.strip(), *_TOKEN_SPLIT.split(text)}:
            if token in values:
                yield f"value of the source DICOM {values[token]} ({token!r})"
    m = _NAME_IN_TEXT.search(text)
    if m:
        yield f"DICOM identifying attribute named ({m.group(0)!r})"
    for m in _TAG_IN_TEXT.finditer(text):
        tag = (m.group(1) + m.group(2)).upper()
        if tag in _TAGS:
            yield f"DICOM tag {m.group(0)!r} ({_TAGS[tag]})"
            break
    m = _PERSON_NAME.search(text)
    if m:
        yield f"DICOM person-name value {m.group(0)!r}"
    yield from describe(find_machine_paths(text, roots))


def _walk_json(node: Any, path: str, values: dict[str, str] | None = None,
               roots: tuple[str, ...] = ()) -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        for k, v in node.items():
            sub = f"{path}.{k}" if path else str(k)
            attr = key_is_phi(str(k))
            if attr:
                yield sub, f"DICOM identifying attribute {attr} as a key"
            yield from _walk_json(v, sub, values, roots)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk_json(v, f"{path}[{i}]", values, roots)
    elif isinstance(node, str) or (values and isinstance(node, int) and not isinstance(node, bool)):
        for what in text_hits(str(node), values, roots):
            yield path or "(value)", what


def scan_json(path: Path, rel: str, values: dict[str, str] | None = None, roots: tuple[str, ...] = ()) -> list[PhiHit]:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return [PhiHit(rel, "file", f"unreadable JSON ({exc}); cannot be checked for PHI")]
    return [PhiHit(rel, where, what) for where, what in _walk_json(doc, "", values, roots)]


def scan_text(path: Path, rel: str, values: dict[str, str] | None = None, roots: tuple[str, ...] = ()) -> list[PhiHit]:
    hits = []
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return [PhiHit(rel, "file", f"unreadable ({exc.strerror}); cannot be checked for PHI")]
    for lineno, line in enumerate(text.splitlines(), 1):
        for what in text_hits(line, values, roots):
            hits.append(PhiHit(rel, f"line {lineno}", what))
    return hits


def scan_frame(df: Any, rel: str, values: dict[str, str] | None = None, roots: tuple[str, ...] = ()) -> list[PhiHit]:
    hits = []
    for col in df.columns:
        attr = key_is_phi(str(col))
        if attr:
            hits.append(PhiHit(rel, f"column {col}", f"DICOM identifying attribute {attr} as a column"))
        if df[col].dtype.kind in "iufb" and not values:
            continue
        for i, v in enumerate(df[col].tolist()):
            if isinstance(v, str) or (values and v is not None and not isinstance(v, float)):
                for what in text_hits(str(v), values, roots):
                    hits.append(PhiHit(rel, f"row {i}, column {col}", what))
    return hits


# NIfTI header text fields (descrip, aux_file, intent_name, db_name) are written empty by this pipeline and
# have no use for dates or long numbers, so there a date (a birth date?) or a run of 6+ digits (an accession or
# record number?) is reported too; elsewhere such values are legitimate (acquisition dates, series UIDs).
_DATE_IN_TEXT = re.compile(r"(?<!\d)(?:19|20)\d{2}([-/.]?)(?:0[1-9]|1[0-2])\1(?:0[1-9]|[12]\d|3[01])(?!\d)"
                           r"|(?<!\d)(?:0?[1-9]|[12]\d|3[01])[-/.](?:0?[1-9]|1[0-2])[-/.](?:19|20)\d{2}(?!\d)")
_LONG_NUMBER = re.compile(r"\d{6,}")


def header_text_hits(text: str, values: dict[str, str] | None = None, roots: tuple[str, ...] = ()) -> Iterator[str]:
    """``text_hits`` plus dates and identifier-like numbers, for NIfTI header text fields."""
    yield from text_hits(text, values, roots)
    m = _DATE_IN_TEXT.search(text)
    if m:
        yield f"date-like value {m.group(0)!r} (NIfTI header text must carry no dates)"
    elif (m := _LONG_NUMBER.search(text)) is not None:
        yield f"identifier-like number {m.group(0)!r} (NIfTI header text must carry no record numbers)"


def scan_nifti(path: Path, rel: str, header: Any = None, values: dict[str, str] | None = None,
               roots: tuple[str, ...] = ()) -> list[PhiHit]:
    """Header text fields and extensions (``header`` if already loaded); voxel data is never read."""
    if header is None:
        import nibabel as nib

        try:
            header = nib.load(str(path)).header
        except Exception as exc:  # nibabel raises many types for a broken header; report, don't crash
            return [PhiHit(rel, "header", f"unreadable NIfTI header ({type(exc).__name__}); cannot be checked for PHI")]
    hits = []
    for field in ("descrip", "aux_file", "intent_name", "db_name"):
        if field not in header:
            continue
        value = header[field].item()
        text = value.decode("latin-1", "replace").rstrip("\x00") if isinstance(value, bytes) else str(value)
        for what in header_text_hits(text, values, roots):
            hits.append(PhiHit(rel, f"header {field}", what))
    for i, ext in enumerate(getattr(header, "extensions", []) or []):
        code = ext.get_code()
        if code == 2:
            hits.append(PhiHit(rel, f"extension {i}", "DICOM header extension (ecode 2) embedded in the NIfTI"))
            continue
        raw = ext.get_content()
        content = raw if isinstance(raw, bytes) else str(raw).encode()
        for what in text_hits(content.decode("latin-1", "replace"), values, roots):
            hits.append(PhiHit(rel, f"extension {i} (ecode {code})", what))
    return hits


def scan_file(path: Path, rel: str, values: dict[str, str] | None = None, roots: tuple[str, ...] = ()) -> list[PhiHit]:
    name = path.name.lower()
    if name.endswith(".json"):
        return scan_json(path, rel, values, roots)
    if name.endswith((".nii", ".nii.gz")):
        return scan_nifti(path, rel, values=values, roots=roots)
    if name.endswith(".parquet"):
        import pandas as pd

        try:
            return scan_frame(pd.read_parquet(path), rel, values, roots)
        except (OSError, ValueError) as exc:
            return [PhiHit(rel, "file", f"unreadable Parquet ({exc}); cannot be checked for PHI")]
    if name.endswith(".xlsx"):
        import pandas as pd

        try:
            sheets = pd.read_excel(path, sheet_name=None)
        except (OSError, ValueError) as exc:
            return [PhiHit(rel, "file", f"unreadable xlsx ({exc}); cannot be checked for PHI")]
        hits = [h for sheet, df in sheets.items() for h in scan_frame(df, f"{rel}[{sheet}]", values, roots)]
        return hits + scan_xlsx_properties(path, rel, values, roots)
    if name.endswith(TEXT_SUFFIXES) or name in ("sha256sums", "licenses", "changelog"):
        return scan_text(path, rel, values, roots)
    return []


def scan_xlsx_properties(path: Path, rel: str, values: dict[str, str] | None = None,
                         roots: tuple[str, ...] = ()) -> list[PhiHit]:
    """Document properties of an xlsx (creator, last modified by, title, custom properties)."""
    import zipfile

    hits = []
    try:
        with zipfile.ZipFile(path) as zf:
            for name in sorted(n for n in zf.namelist() if n.startswith("docProps/") and n.endswith(".xml")):
                xml = zf.read(name).decode("utf-8", "replace")
                for m in re.finditer(r"<([\w:]+)[^>]*>([^<]+)</\1>", xml):
                    for what in text_hits(m.group(2), values, roots):
                        hits.append(PhiHit(rel, f"{name} {m.group(1)}", what))
    except (OSError, zipfile.BadZipFile) as exc:
        hits.append(PhiHit(rel, "file", f"unreadable xlsx ({exc}); cannot be checked for PHI"))
    return hits


def source_values(dicom_dir: StrPath) -> dict[str, str]:
    """Identifying values (PatientName, PatientBirthDate, AccessionNumber, ...) found in a folder of source
    DICOM files (searched recursively; headers only), mapped to their attribute, for a literal search of the
    release. Values shorter than MIN_VALUE_LENGTH are left out (too many innocent matches)."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    tags = list(PHI_ATTRIBUTES)
    out: dict[str, str] = {}
    for path in sorted(Path(dicom_dir).rglob("*")):
        if not path.is_file():
            continue
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=tags)
        except (InvalidDicomError, OSError, ValueError, TypeError, EOFError):
            continue  # not a DICOM file (ledger, json ...)
        for attr in tags:
            value = ds.get(attr)
            if value is None or value == "":
                continue
            items = value if isinstance(value, (list, tuple, pydicom.multival.MultiValue)) else [value]
            for item in items:
                text = str(item).strip()
                if len(text) >= MIN_VALUE_LENGTH:
                    out.setdefault(text, attr)
    return out
