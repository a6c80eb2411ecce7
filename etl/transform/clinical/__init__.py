"""The one clinical mapping engine: source spreadsheets -> table variables, driven by ``mappings/*.yaml``.

A collection is described only by its YAML file (source sheets and header rows, the patient-id rule and, per
target variable, one rule); this module knows no collection by name. Rules are a small closed set of named
operations so that a curator can read every mapping without reading Python:

``value``                 one column, optionally through a code ``map``, ``scale`` (unit conversion), ``round``
``whole_years_from_days`` age in whole years from a day offset (``days_per_year``, ``sign``)
``any_of``                1 if any column holds a ``positive`` code, 0 if all hold ``negative`` codes
``combine``               a code map keyed by several columns (``"1,0": luminal``)
``cases``                 first matching condition wins; its result is a constant or another column

Codes compare by meaning (``1``, ``1.0`` and ``" 1 "`` are one code; text codes ignore case and surrounding
whitespace); a code that a map does not list is an error naming file, sheet, column, row and value, unless
the rule says ``on_unknown: null``. Sheets are read by header text, wherever the header and columns sit. Carried-forward tables are cleaned by :class:`Normalizer` (``mappings/normalize.yaml``),
which counts every change it makes.

Modules, one job each: ``values`` (what a cell means: codes, numbers, header names), ``mapping`` (the mapping
language: YAML -> rules), ``source`` (reading a source workbook), ``apply`` (rules -> values with lineage),
``normalize`` (carried-forward tables). The public names are re-exported here.
"""

from etl.transform.clinical.apply import MappedValues, apply_mapping
from etl.transform.clinical.mapping import (
    NORMALIZE_FILE,
    CollectionMapping,
    Rule,
    SheetSpec,
    SourceSpec,
    TciaRule,
    check_targets,
    load_collections,
    load_mapping,
)
from etl.transform.clinical.normalize import Normalizer, normalize_counts
from etl.transform.clinical.source import SheetData, SourceData, read_source

__all__ = ["NORMALIZE_FILE", "CollectionMapping", "MappedValues", "Normalizer", "Rule", "SheetData", "SheetSpec",
           "SourceData", "SourceSpec", "TciaRule", "apply_mapping", "check_targets", "load_collections",
           "load_mapping", "normalize_counts", "read_source"]
