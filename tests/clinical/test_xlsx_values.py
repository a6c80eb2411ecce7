"""The engine's value reader returns what openpyxl returns, cell for cell, on the real source workbooks."""

from __future__ import annotations

import datetime as dt

import openpyxl
import pytest

from etl.errors import InputUnreadable
from etl.transform.xlsx_values import ValueWorkbook, column_index, column_letter

pytestmark = pytest.mark.filterwarnings("ignore:Unknown extension is not supported:UserWarning")


@pytest.mark.parametrize("which", ["duke", "ispy1"])
def test_values_equal_openpyxl(real_paths, which):
    path = real_paths[which]
    book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    with ValueWorkbook(path) as ours:
        assert ours.sheet_names == book.sheetnames
        checked = 0
        for name in book.sheetnames:
            mine = dict(ours.rows(name))
            for r, row in enumerate(book[name].iter_rows(values_only=True), start=1):
                got = mine.get(r, ())
                for c, expected in enumerate(row):
                    value = got[c] if c < len(got) else None
                    if isinstance(expected, dt.datetime):
                        assert isinstance(value, (int, float))  # dates stay Excel serial numbers
                        continue
                    if expected is None:  # openpyxl reads an empty cached formula string as None
                        assert value in (None, ""), (name, r, c)
                        continue
                    assert value == expected and type(value) is type(expected), (name, r, c, value, expected)
                    checked += 1
    book.close()
    assert checked > (60000 if which == "duke" else 4500)


def test_column_letters_round_trip():
    for i in (0, 25, 26, 51, 98, 701, 702):
        assert column_index(column_letter(i) + "7") == i
    assert column_letter(59) == "BH"


def test_not_a_workbook_is_unreadable(tmp_path):
    bad = tmp_path / "x.xlsx"
    bad.write_text("not a zip")
    with pytest.raises(InputUnreadable, match="not a readable xlsx workbook"):
        ValueWorkbook(bad)
    with pytest.raises(InputUnreadable, match="source file not found"):
        ValueWorkbook(tmp_path / "missing.xlsx")
