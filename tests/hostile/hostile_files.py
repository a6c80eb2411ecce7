"""Small generated hostile inputs: an entity-expansion xlsx, YAML bombs."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

MAIN_NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"


def billion_laughs_xml(root: str = "worksheet", depth: int = 9) -> bytes:
    """An XML part whose one cell expands to 10**depth "lol"s (3 GB at depth 9) if entities are expanded."""
    ents = ['<!ENTITY lol0 "lol">'] + [f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, depth + 1)]
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE {root} [{"".join(ents)}]>\n'
            f'<{root} xmlns="{MAIN_NS}"><sheetData><row r="1"><c r="A1" t="inlineStr"><is><t>&lol{depth};</t></is>'
            f'</c></row></sheetData></{root}>').encode()  # fmt: skip


def billion_laughs_xlsx(path: Path, sheet: str = "dataset_info") -> Path:
    """A real workbook (written by openpyxl) whose first worksheet part is replaced by an entity bomb."""
    import openpyxl

    book = openpyxl.Workbook()
    book.active.title = sheet
    book.active["A1"] = "patient_id"
    buf = io.BytesIO()
    book.save(buf)
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as zin, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zout:
        for item in zin.infolist():
            data = zin.read(item)
            if item.filename == "xl/worksheets/sheet1.xml":
                data = billion_laughs_xml()
            zout.writestr(item, data)
    path.write_bytes(out.getvalue())
    return path


YAML_BOMB = "\n".join(
    ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
) + "\n"  # 9**9 = 387 million strings once the aliases are expanded

YAML_OBJECT = "name: x\nrun: !!python/object/apply:os.system ['echo pwned > /tmp/pwned']\n"
