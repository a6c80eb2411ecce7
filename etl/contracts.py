"""The data contracts every stage shares: release file names, the nnU-Net case id, the imaging variables.

A name spelled in two modules drifts: one is renamed, the other still writes the old file, and a release
ships without the file its verifier looks for. So each name is defined here once and the build, verify,
Croissant, the data card, review, rebuild and the exports import it. Folder names and per-case file names
are not here: they are data, the ``naming`` templates of the release definition, and ``etl.layout.Layout``
renders them. The one sha256 of a file is ``etl.hashing.file_sha256``.
"""

from __future__ import annotations

from etl.errors import ConfigError

# Files at the top of a release (ARCHITECTURE.md, "Release directory").
TABLE = "clinical_and_imaging_info.parquet"      # typed 49-variable table plus split
TABLE_XLSX = "clinical_and_imaging_info.xlsx"    # drop-in for the published v1 spreadsheet
TABLE_CSV = "clinical_and_imaging_info.csv"      # accepted as an input table (report, validate)
SPLITS = "train_test_splits.csv"                 # patient_id, split, fold
NNUNET_SPLITS = "splits_final.json"              # the same folds in nnU-Net v2 form
QC = "segmentation_qc.parquet"                   # per-case mask volumes and agreement
RATINGS = "segmentation_quality.csv"             # the review store's export (visual ratings)
CORRECTIONS = "corrections.parquet"              # in the segmentations folder (Layout.corrections)
SEGMENTATION_METHODS = "segmentation_methods.json"  # who made each automatic mask (staged directories)
REPORT = "report.html"                           # the data card (`release build --report`)
PROVENANCE = "provenance.json"
CROISSANT = "croissant.json"
DATA_DICTIONARY = "data_dictionary.md"
LICENSES = "LICENSES.md"
CHANGELOG = "CHANGELOG.md"
MANIFEST = "SHA256SUMS"                          # written last; lists every other file

REQUIRED_FILES = (TABLE, TABLE_XLSX, SPLITS, DATA_DICTIONARY, CROISSANT, PROVENANCE, LICENSES, CHANGELOG, MANIFEST)
OPTIONAL_FILES = (QC, NNUNET_SPLITS, RATINGS, REPORT)

# A release is checksummed (every file is listed in SHA256SUMS), so review caches sit beside it: RELEASE.review/
REVIEW_CACHE_SUFFIX = ".review"

# The nnU-Net case identifier (split.nnunet_case_id of the release definition): {patient_id} is the lower-case
# patient id, {PATIENT_ID} the upper-case one. One template for splits_final.json, the segment stage's nnU-Net
# folders and the nnU-Net export, so a fold names exactly the files the export wrote.
DEFAULT_CASE_ID = "{patient_id}"


def nnunet_case_id(patient_id: str, template: str = DEFAULT_CASE_ID) -> str:
    """The nnU-Net case identifier of ``patient_id`` under ``template``."""
    return template.format(patient_id=patient_id.lower(), PATIENT_ID=patient_id.upper())


def check_case_id_template(template: str, where: str = "split.nnunet_case_id") -> str:
    """``template`` if it renders, names the patient and makes a legal nnU-Net case id; else a ConfigError.

    A template without a patient placeholder would give every case the same id; a ``/`` or a trailing
    ``_0000`` would make nnU-Net read the id as a folder or a channel."""
    try:
        rendered = nnunet_case_id("Case_1", template)
    except (KeyError, IndexError, ValueError, AttributeError) as exc:
        raise ConfigError(f"nnunet_case_id may use only {{patient_id}} / {{PATIENT_ID}}, got {template!r}", where) from exc
    if "{patient_id}" not in template and "{PATIENT_ID}" not in template:
        raise ConfigError(f"nnunet_case_id must contain {{patient_id}} or {{PATIENT_ID}}, got {template!r}", where)
    if not rendered or any(c in rendered for c in "/\\") or rendered.strip() != rendered:
        raise ConfigError(f"nnunet_case_id renders {rendered!r}, not a file-name-safe identifier", where)
    return template


def imaging_variables() -> list[str]:
    """The imaging columns of the table, in published order, from the schema (``group: imaging``)."""
    from etl.validate.schema import imaging_columns

    return imaging_columns()
