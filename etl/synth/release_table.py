"""A seeded synthetic "previous release" table for collections that have no source spreadsheet.

In a real rebuild ISPY2 and NACT are carried forward from the previous release (`clinical build --base`).
The demo publishes such a table on its Synapse stand-in: clinical and demographic values are random but
consistent with the schema's rules (hr from er/pr, subtype from hr/her2, events before follow-up); imaging
columns are left empty because `convert` extracts them from the DICOM headers.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import pandas as pd

from etl.synth.clinical_sources import draw_receptors
from etl.validate.schema import coerce_frame, load_schema

_SUBTYPE = {(0, 0): "triple_negative", (0, 1): "her2_pure", (1, 0): "luminal_a", (1, 1): "luminal_b"}
_AGENTS = ["Paclitaxel", "Paclitaxel + Trastuzumab", "Paclitaxel + Pertuzumab + Trastuzumab", "Anthracycline + Taxane"]
_ETHNICITY = ["caucasian", "african american", "asian", "hispanic", "multiple race"]


def previous_release_table(patient_ids: Sequence[str], seed: int = 0) -> pd.DataFrame:
    """A 49-column table (canonical form) for ``patient_ids``; imaging columns empty."""
    columns = load_schema().column_names()
    rows = []
    for pid in patient_ids:
        rng = random.Random(f"{seed}:{pid}")
        er, pr, her2 = draw_receptors(rng)
        hr = int(er or pr)
        follow = rng.randint(365, 3000)
        recurred = rng.random() < 0.15
        row = dict.fromkeys(columns)
        row.update(
            patient_id=pid,
            dataset=pid.partition("_")[0],
            bilateral_breast_cancer=int(rng.random() < 0.02),
            multifocal_cancer=int(rng.random() < 0.4),
            nac_agent=rng.choice(_AGENTS),
            pcr=int(rng.random() < 0.3),
            days_to_follow_up=follow,
            days_to_recurrence=rng.randint(100, follow) if recurred else 0,
            days_to_death=0,
            hr=hr, er=er, pr=pr, her2=her2,
            tumor_subtype=_SUBTYPE[(hr, her2)],
            age=rng.randint(28, 75),
            menopause=rng.choice(["pre", "post"]),
            ethnicity=rng.choice(_ETHNICITY),
            has_implant=0,
        )
        rows.append(row)
    return coerce_frame(pd.DataFrame(rows, columns=columns))
