"""Small seeded synthetic clinical source spreadsheets in the published Duke and I-SPY1 layouts.

The demo and tests need sources for synthetic patients that exercise the real mappings unchanged: the same
sheet names, header rows, column names and codes as TCIA's ``Clinical_and_Other_Features.xlsx`` (sheet
``Data`` with three header rows) and ``I-SPY_1_All_Patient_Clinical_and_Outcome_Data.xlsx`` (sheets
``predictors`` and ``outcomes``). Values are random but internally consistent (subtype follows the
receptors, events happen before the last follow-up), so a built table validates. Only the columns the
mappings read plus a few neighbours are written; the real sheets have more.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from etl.atomic import atomic_path

DUKE_FILE = "Clinical_and_Other_Features.xlsx"
ISPY1_FILE = "I-SPY_1_All_Patient_Clinical_and_Outcome_Data.xlsx"

# (group row 1, column name row 2, code legend row 3) of sheet `Data`, in the published column order.
_DUKE_COLUMNS: list[tuple[str | None, str, str | None]] = [
    ("Patient Information", "Patient ID", None),
    ("MRI Technical Information", "Days to MRI (From the Date of Diagnosis)", None),
    (None, "Manufacturer", "GE MEDICAL SYSTEMS=0, MPTronic software=1, SIEMENS=2"),
    (None, "Manufacturer Model Name", "Avanto=0, Optima MR450w=1, SIGNA EXCITE=2, SIGNA HDx=3, Signa HDxt=4, Skyra=5, Trio=6, TrioTim=7"),
    (None, "Field Strength (Tesla)", "1.494=0,1.5=1,2.8936=2,3=3"),
    (None, "TR (Repetition Time)", None),
    (None, "TE (Echo Time)", None),
    (None, "Rows", "320=0,448=1,512=2"),
    (None, "Columns", "320=0,448=1,512=2"),
    ("Demographics", "Date of Birth (Days)", "(Taking date of diagnosis as day 0)"),
    (None, "Menopause (at diagnosis)", "{0 = pre,\n1 = post,\n2 = N/A}"),
    (None, "Race and Ethnicity", "{0 = N/A\n1 = white,\n2 = black,\n3 = asian,\n4 = native,\n5 = hispanic,\n6 = multi,\n7 = hawa,    8 = amer indian}"),
    ("Tumor Characteristics", "ER", "{0 = neg,\n1 = pos}"),
    (None, "PR", "{0 = neg,\n1 = pos}"),
    (None, "HER2", "{0 = neg,\n1 = pos, 2 = borderline}"),
    (None, "Mol Subtype", "{0 = luminal-like,\n1 = ER/PR pos, HER2 pos,\n2 = her2,\n3 = trip neg}"),
    (None, "Oncotype score", None),
    (None, "Nottingham grade", "1=low 2=intermediate 3=high\n"),
    (None, "Bilateral Information", "Bilateral breast cancer?\n{ 0=no 1=yes}"),
    ("MRI Findings", "Multicentric/Multifocal", "{0 = no, 1 = yes}"),
    ("SURGERY", "Surgery", "{0 = no,1 = yes}"),
    (None, "Definitive Surgery Type", "{0=BCS, 1=mastectomy}"),
    ("Tumor Response", "Pathologic Response to Neoadjuvant Therapy",
     " {1=complete response, 2=not complete response, 3=DCIS only remaining, 4=LCIS only remaining, "
     "5=treatment response assessment unavailable, NA=no neoadjuvant therapy or not enough information to assess "
     "neoadjuvant therapy status}"),
    ("Recurrence", "Recurrence event(s)", "{0 = no, 1 = yes}"),
    (None, "Days to local recurrence (from the date of diagnosis) ", None),
    (None, "Days to distant recurrence(from the date of diagnosis) ", None),
    ("Follow Up", "Days to death (from the date of diagnosis) ", None),
    (None, "Days to last local recurrence free assessment (from the date of diagnosis) ", None),
    (None, "Days to last distant recurrence free assemssment(from the date of diagnosis) ", None),
    ("Endocrine Therapy", "Neoadjuvant Endocrine Therapy Medications ", "{0 = no, 1 = yes}"),
    ("Anti-Her2 Neu Therapy", "Neoadjuvant Anti-Her2 Neu Therapy", " {0 = no, 1 = yes}"),
]

_DUKE_LEGEND = [
    ("ABBREVIATION LEGEND", None),
    ("Abbr", "Meaning"),
    ("NA", "Not Available"),
    ("NP", "Not Pertinent (this data does not apply in this case)"),
    ("NC", "Data Not Collected"),
]

_ISPY1_PREDICTORS = ["SUBJECTID", "DataExtractDt", "age", "race_id", "ERpos", "PgRpos", "HR Pos", "Her2MostPos",
                     "HR_HER2_CATEGORY", "HR_HER2_STATUS", "BilateralCa", "Laterality", "MRI LD Baseline"]
_ISPY1_OUTCOMES = ["SUBJECTID", "DataExtractDt", "sstat", "survDtD2 (tx)", "RFS", "rfs_ind", "PCR", "RCBClass"]
_ISPY1_DICTIONARY = [
    (None, "I-SPY 1 TRIAL: ", "ACRIN 6657", None),
    (None, "Variable Name", "Variable Description", "Format"),
    (None, "race_id", "Patient Race", "Number"),
    (None, None, "1=Caucasian", None),
    (None, None, "3=African American", None),
    (None, None, "4=Asian", None),
    (None, None, "5=Native Hawaiian/Pacific Islander", None),
    (None, None, "6=American Indian/Alaskan Native", None),
    (None, None, "50=Multiple race", None),
]
_ISPY1_OUTCOME_DICTIONARY = [
    (None, "I-SPY TRIAL: ", None, None),
    (None, "Variable Name", "Variable Description", "Format"),
    (None, "Sstat", "Survival Status", "Number"),
    (None, None, "7=Alive", None),
    (None, None, "8= Dead", None),
    (None, None, "9=Lost", None),
]
_EXTRACT_DATE = dt.datetime(2009, 9, 3)


def draw_receptors(rng: random.Random) -> tuple[int, int, int]:
    """ER, PR, HER2 (0/1) with roughly the collections' prevalences."""
    er = int(rng.random() < 0.6)
    pr = int(rng.random() < (0.7 if er else 0.1))
    her2 = int(rng.random() < 0.25)
    return er, pr, her2


def _duke_row(pid: str, rng: random.Random) -> list[Any]:
    number = re.sub(r"\D", "", pid)
    er, pr, her2 = draw_receptors(rng)
    hr = er or pr
    subtype = (1 if her2 else 0) if hr else (2 if her2 else 3)
    age_days = rng.randint(28 * 365, 75 * 365)
    follow = rng.randint(300, 3000)
    recurrence = rng.random() < 0.12
    local: int | str = "NP"
    distant: int | str = "NP"
    death: int | str = "NP"
    if recurrence:
        day = rng.randint(100, follow)
        if rng.random() < 0.7:
            distant = day
        else:
            local = day
        if rng.random() < 0.5:
            death = rng.randint(day, follow)
    manufacturer = rng.choice([0, 2])
    model = rng.choice([1, 2, 3, 4]) if manufacturer == 0 else rng.choice([0, 5, 7])
    size = rng.choice([0, 1, 2])
    mastectomy = rng.choice([0, 1, "NP"])
    return [
        f"Breast_MRI_{number}",
        rng.randint(1, 40),
        manufacturer,
        model,
        rng.choice([1, 3]),
        round(rng.uniform(3.5, 7.4), 3),
        round(rng.uniform(1.2, 2.8), 3),
        size,
        size,
        -age_days,
        (0 if age_days < 50 * 365 else 1) if rng.random() > 0.02 else 2,
        rng.choice([1, 1, 1, 2, 2, 3, 5, 6]),
        er,
        pr,
        her2,
        subtype,
        rng.randint(5, 60) if rng.random() < 0.1 else "NA",
        rng.choice([1, 2, 3, 3, "NA"]),
        rng.choice([0, 0, 0, 0, 1, "NC"]),
        rng.choice([0, 1]),
        1,
        mastectomy,
        rng.choice([1, 2, 2, 2, 3, 5, "NA"]),
        int(recurrence),
        local,
        distant,
        death,
        follow,
        follow,
        int(rng.random() < 0.05),
        her2 if rng.random() < 0.9 else 0,
    ]


def _ispy1_rows(pid: str, rng: random.Random) -> tuple[list[Any], list[Any]]:
    subject = int(re.sub(r"\D", "", pid.split("_", 1)[-1]))
    er, pr, her2 = draw_receptors(rng)
    hr = int(bool(er or pr))
    category = 2 if her2 else (1 if hr else 3)
    status = "HER2pos" if her2 else ("HRposHER2neg" if hr else "TripleNeg")
    predictors = [subject, _EXTRACT_DATE, round(rng.uniform(27, 70), 2), rng.choice([1, 1, 1, 3, 4, 50]), er, pr, hr,
                  her2, category, status, int(rng.random() < 0.02), rng.choice([1, 2]), rng.randint(20, 120)]
    surv = rng.randint(200, 2400)
    sstat = rng.choice([7, 7, 7, 8, 9])
    event = int(sstat == 8 or rng.random() < 0.1)
    rfs = rng.randint(100, surv) if event else surv
    pcr = rng.choice([0, 0, 1, None])
    outcomes = [subject, _EXTRACT_DATE, sstat, surv, rfs, event, pcr, None if pcr is None else rng.choice([0, 1, 2, 3])]
    return predictors, outcomes


def _save(book: Any, path: Path) -> Path:
    book.properties.created = _EXTRACT_DATE
    book.properties.modified = _EXTRACT_DATE
    with atomic_path(path) as tmp:
        book.save(tmp)
    return path


def write_duke_source(path: str | os.PathLike[str], patient_ids: Sequence[str], seed: int = 0) -> Path:
    """A Duke ``Clinical_and_Other_Features.xlsx`` for ``patient_ids`` (``DUKE_001`` -> ``Breast_MRI_001``)."""
    import openpyxl

    rng = random.Random(f"duke-{seed}")
    book = openpyxl.Workbook()
    ws = book.active
    ws.title = "Data"
    ws.append([c[0] for c in _DUKE_COLUMNS])
    ws.append([c[1] for c in _DUKE_COLUMNS])
    ws.append([c[2] for c in _DUKE_COLUMNS])
    for pid in patient_ids:
        ws.append(_duke_row(pid, rng))
    legend = book.create_sheet("Legend")
    for row in _DUKE_LEGEND:
        legend.append(list(row))
    book.create_sheet("Column Explanations").append(["Patient ID", None, "Collected from DICOM files "])
    return _save(book, Path(path))


def write_ispy1_source(path: str | os.PathLike[str], patient_ids: Sequence[str], seed: int = 0) -> Path:
    """An I-SPY1 clinical/outcome workbook for ``patient_ids`` (``ISPY1_1001`` -> SUBJECTID 1001)."""
    import openpyxl

    rng = random.Random(f"ispy1-{seed}")
    book = openpyxl.Workbook()
    dictionary = book.active
    dictionary.title = "Clinical Data Dictionary"
    for row in _ISPY1_DICTIONARY:
        dictionary.append(list(row))
    predictors = book.create_sheet("predictors")
    outcomes = book.create_sheet("outcomes")
    predictors.append(_ISPY1_PREDICTORS)
    outcomes.append(_ISPY1_OUTCOMES)
    for pid in patient_ids:
        p, o = _ispy1_rows(pid, rng)
        predictors.append(p)
        outcomes.append(o)
    out_dict = book.create_sheet("Outcome Data Dictionary")
    for entry in _ISPY1_OUTCOME_DICTIONARY:
        out_dict.append(list(entry))
    return _save(book, Path(path))


_WRITERS: dict[str, tuple[str, str, Callable[..., Path]]] = {
    "DUKE": ("duke", DUKE_FILE, write_duke_source),
    "ISPY1": ("ispy1", ISPY1_FILE, write_ispy1_source),
}


def write_clinical_sources(folder: str | os.PathLike[str], patient_ids: Sequence[str], seed: int = 0) -> dict[str, Path]:
    """Write a source for every collection among ``patient_ids`` that has one; returns ``{name: path}``.

    The names are the ``--source NAME=PATH`` names of ``mamamia clinical build`` (``duke``, ``ispy1``).
    """
    folder = Path(folder)
    out: dict[str, Path] = {}
    for dataset, (name, filename, writer) in _WRITERS.items():
        ids = [p for p in patient_ids if p.split("_", 1)[0] == dataset]
        if ids:
            out[name] = writer(folder / name / filename, ids, seed)
    return out
