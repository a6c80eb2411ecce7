"""Read and write the 49-variable table in its three file forms (.xlsx drop-in, typed .parquet, .csv).

In memory the table has one canonical form (see ``etl.validate.schema``): list and date fields keep their
published text form so that every file form validates the same way. Parquet is the typed form: lists are
``list<double>`` / ``list<int64>`` and dates ``date32``, converted here on the way in and out.
"""

from __future__ import annotations

import io
import logging
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from etl.atomic import atomic_path
from etl.errors import InputUnreadable
from etl.safetext import csv_safe_frame, protect_sheet
from etl.types import StrPath
from etl.validate.schema import STRING_DTYPE

if TYPE_CHECKING:
    import pyarrow as pa  # no type information (see [tool.mypy]): these annotations only document

log = logging.getLogger("etl.tables")

SHEET = "dataset_info"
LEGEND_SHEET = "legend"
TABLE_SUFFIXES = (".xlsx", ".xlsm", ".parquet", ".csv")

# Fixed timestamp for xlsx parts so that writing the same table twice gives identical bytes.
_FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
_FIXED_ISO_TIME = "2000-01-01T00:00:00Z"


def read_table(path: StrPath, sheet: str = SHEET, raw: bool = False) -> pd.DataFrame:
    """Read a table file into the canonical in-memory form.

    ``raw=True`` returns the values as the file holds them (for the validator, which wants to report every
    bad cell itself); otherwise known columns are coerced to canonical dtypes and a value that cannot be
    coerced raises ``ValidationFailed`` naming its row and column.
    """
    from etl.validate.schema import coerce_frame

    df = _read_raw(Path(path), sheet)
    return df if raw else coerce_frame(df)


def _read_raw(path: Path, sheet: str) -> pd.DataFrame:
    if not path.exists():
        raise InputUnreadable("file not found", str(path))
    if path.is_dir():
        raise InputUnreadable("is a directory, not a table file", str(path))
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise InputUnreadable(f"unsupported table format {suffix or '(none)'}; use .xlsx, .parquet or .csv", str(path))
    try:
        if suffix in (".xlsx", ".xlsm"):
            df = _read_xlsx(path, sheet)
        elif suffix == ".parquet":
            df = _read_parquet(path)
        else:
            df = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], sep=sniff_delimiter(path))
    except InputUnreadable:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, KeyError, ImportError) as exc:
        raise InputUnreadable(f"not a readable {suffix[1:]} table: {_first_line(exc)}", str(path)) from exc
    if df.shape[1] == 0:
        raise InputUnreadable("no columns found", str(path))
    df.columns = [str(c) for c in df.columns]
    return df.reset_index(drop=True)


CSV_DELIMITERS = (",", ";", "\t")


def sniff_delimiter(path: Path) -> str:
    """The delimiter of a CSV file: the one of ``,`` ``;`` or tab that occurs most in its header line, outside
    quotes (a header names columns, which hold no delimiter; data rows may: ``[0, 584]``, ``a;b`` paths).
    Spreadsheet exports in many locales write ``;``; tab-separated text is common too."""
    import csv

    with open(path, newline="", encoding="utf-8-sig", errors="replace") as fh:
        header = fh.readline()
    unquoted = "".join(part for i, part in enumerate(header.split('"')) if i % 2 == 0)
    counts = {d: unquoted.count(d) for d in CSV_DELIMITERS}
    best = max(CSV_DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] else csv.excel.delimiter


def _read_xlsx(path: Path, sheet: str) -> pd.DataFrame:
    try:
        book = pd.ExcelFile(path, engine="openpyxl")
    except (zipfile.BadZipFile, ValueError, KeyError, OSError) as exc:
        raise InputUnreadable(f"not a readable xlsx workbook: {_first_line(exc)}", str(path)) from exc
    with book:
        if sheet not in book.sheet_names:
            raise InputUnreadable(f"no sheet {sheet!r} (sheets: {', '.join(map(str, book.sheet_names))})", str(path))
        return pd.read_excel(book, sheet_name=sheet)


def _read_parquet(path: Path) -> pd.DataFrame:
    import pyarrow.parquet as pq

    from etl.validate.schema import load_schema

    table = _typed_to_text(pq.read_table(path), load_schema().formats())
    return table.to_pandas(types_mapper=_nullable_types)


def _nullable_types(arrow_type: pa.DataType) -> pd.api.extensions.ExtensionDtype | None:
    import pyarrow as pa

    if pa.types.is_integer(arrow_type):
        return pd.Int64Dtype()
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return STRING_DTYPE
    return None


def write_table(df: pd.DataFrame, path: StrPath) -> Path:
    """Write the canonical table by file extension, atomically (temp file, then rename)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise InputUnreadable(f"unsupported table format {suffix or '(none)'}; use .xlsx, .parquet or .csv", str(path))
    with atomic_path(path) as tmp:
        if suffix == ".parquet":
            _write_parquet(df, tmp)
        elif suffix == ".csv":
            csv_safe_frame(df).to_csv(tmp, index=False, lineterminator="\n")  # formula-like text quote-prefixed
        else:
            _write_xlsx(df, tmp)
    return path


def to_arrow(df: pd.DataFrame) -> pa.Table:
    """The typed Arrow form of a canonical table (lists and dates typed, per the schema)."""
    import pyarrow as pa

    from etl.validate.schema import load_schema

    schema = load_schema()
    formats = schema.formats()
    fields = []
    arrays = []
    for name in df.columns:
        col = df[name]
        fmt = formats.get(name)
        if fmt in ("list_float", "list_int"):
            arr = _text_to_list(col, pa.float64() if fmt == "list_float" else pa.int64())
        elif fmt == "date":
            arr = pa.array(pd.to_datetime(col, format="%Y/%m/%d", errors="coerce").dt.date, type=pa.date32())
        elif isinstance(col.dtype, pd.Int64Dtype) or col.dtype.kind in "iu":
            arr = pa.array(col.astype("Int64"), type=pa.int64(), from_pandas=True)
        elif col.dtype.kind == "f":
            arr = pa.array(col, type=pa.float64(), from_pandas=True)
        elif col.dtype.kind == "b" or isinstance(col.dtype, pd.BooleanDtype):
            arr = pa.array(col, type=pa.bool_(), from_pandas=True)
        else:
            arr = pa.array(col.astype(STRING_DTYPE), type=pa.string(), from_pandas=True)
        desc = schema.columns[name].description if name in schema.columns else None
        fields.append(pa.field(name, arr.type, metadata={"description": desc} if desc else None))
        arrays.append(arr)
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def _text_to_list(col: pd.Series, item_type: pa.DataType) -> pa.Array:
    """'[0, 584, 714]' -> list<int64> (unparsable text -> null), vectorized through the unique values."""
    import pyarrow as pa

    codes, uniques = pd.factorize(col.astype(STRING_DTYPE), use_na_sentinel=True)
    kind = float if pa.types.is_floating(item_type) else int
    parsed = [_parse_list(u, kind) for u in uniques]
    table = pa.array(parsed + [None], type=pa.list_(item_type))
    return table.take(pa.array(np.where(codes < 0, len(parsed), codes)))


def _write_parquet(df: pd.DataFrame, tmp: Path) -> None:
    import pyarrow.parquet as pq

    pq.write_table(to_arrow(df), tmp, compression="zstd")


def _write_xlsx(df: pd.DataFrame, tmp: Path) -> None:
    from etl.validate.schema import load_schema

    legend = load_schema().legend_frame()
    with pd.ExcelWriter(tmp, engine="openpyxl") as writer:
        df.to_excel(writer, sheet_name=SHEET, index=False)
        legend.to_excel(writer, sheet_name=LEGEND_SHEET, index=False)
        for ws in writer.sheets.values():
            protect_sheet(ws)  # formula-like text stays text (openpyxl makes every "=..." a formula)
    _make_xlsx_deterministic(tmp)


def _make_xlsx_deterministic(path: Path) -> None:
    """Pin the zip entry times and document timestamps that openpyxl stamps with the wall clock."""
    import re

    src = path.read_bytes()
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(src)) as zin, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename == "docProps/core.xml":
                data = re.sub(
                    rb"(<dcterms:(created|modified)[^>]*>)[^<]*(</dcterms:\2>)",
                    rb"\g<1>" + _FIXED_ISO_TIME.encode() + rb"\g<3>",
                    data,
                )
            info = zipfile.ZipInfo(item.filename, date_time=_FIXED_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = item.external_attr
            zout.writestr(info, data)
    path.write_bytes(out.getvalue())


def _typed_to_text(table: pa.Table, formats: dict[str, str]) -> pa.Table:
    """Bring Parquet's typed list/date columns back to the published text form, in Arrow (vectorized; no
    per-row Python lists are ever made, which is what dominated reading a large table through pandas)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    for name, fmt in formats.items():
        if name not in table.column_names:
            continue
        arr = table.column(name).combine_chunks()
        if fmt in ("list_float", "list_int") and (pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type)):
            # format each distinct number once (few per column), then take: Python never sees the rows
            encoded = pc.dictionary_encode(pc.list_flatten(arr)) if len(arr) else None
            fmt_one = (lambda v: str(int(v))) if fmt == "list_int" else (lambda v: repr(float(v)))
            if encoded is None or len(encoded) == 0:
                texts = pa.array([], type=pa.string())
            else:
                words = pa.array([fmt_one(v) for v in encoded.dictionary.to_pylist()], type=pa.string())
                texts = pc.take(words, encoded.indices)
            offsets = arr.offsets
            if arr.offset:  # a sliced array: offsets relative to the flattened values
                offsets = pc.subtract(offsets, offsets[0])
            lists = pa.ListArray.from_arrays(offsets, texts, mask=arr.is_null())
            text = pc.binary_join_element_wise("[", pc.binary_join(lists, ", "), "]", "")
        elif fmt == "date" and (pa.types.is_date(arr.type) or pa.types.is_timestamp(arr.type)):
            text = pc.strftime(arr.cast(pa.timestamp("s")), format="%Y/%m/%d")
        else:
            continue
        table = table.set_column(table.column_names.index(name), name, text)
    return table


def format_list(values: Sequence[float] | None, fmt: str) -> str | None:
    """Published text form of a list value: ``[0.7031, 0.7031]`` or ``[0, 584, 714]``."""
    if values is None:
        return None
    if fmt == "list_int":
        return "[" + ", ".join(str(int(v)) for v in values) + "]"
    return "[" + ", ".join(repr(float(v)) for v in values) + "]"


def _parse_list(value: object, kind: type[int] | type[float]) -> list[float] | None:
    if value is None or (isinstance(value, float) and pd.isna(value)) or value is pd.NA:
        return None
    text = str(value).strip()
    if not (text.startswith("[") and text.endswith("]")):
        return None
    body = text[1:-1].strip()
    if not body:
        return []
    try:
        return [kind(float(x)) if kind is int else kind(x) for x in body.split(",")]
    except ValueError:
        return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:200]
