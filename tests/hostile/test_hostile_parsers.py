"""Hostile parser inputs: an entity-expansion ("billion laughs") xlsx and YAML bombs end in one named line,
quickly, without expanding anything; nothing is written."""

from __future__ import annotations

import resource
import time
from pathlib import Path

import pytest
from tests.hostile.hostile_files import YAML_BOMB, YAML_OBJECT, billion_laughs_xlsx

from etl.errors import ConfigError, InputUnreadable


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_openpyxl_parses_with_defusedxml() -> None:
    """openpyxl switches to defusedxml only when it can import it; the package depends on it."""
    import openpyxl
    from openpyxl import xml as oxml

    assert openpyxl.DEFUSEDXML is True and oxml.DEFUSEDXML is True


def test_billion_laughs_xlsx_is_refused_by_every_reader(tmp_path: Path) -> None:
    from etl.tables import read_table
    from etl.transform.xlsx_values import ValueWorkbook

    bomb = billion_laughs_xlsx(tmp_path / "bomb.xlsx")
    before, start = _peak_mb(), time.monotonic()
    with pytest.raises(InputUnreadable) as err:  # pandas + openpyxl (validate, summary, query, --base)
        read_table(bomb)
    assert err.value.where == str(bomb) and "\n" not in err.value.what
    chain, exc = [], err.value.__cause__  # refused by defusedxml, not by some later parse error
    while exc is not None:
        chain.append(type(exc).__name__)
        exc = exc.__cause__ or exc.__context__
    assert "EntitiesForbidden" in chain
    with pytest.raises(InputUnreadable) as err2:  # the source-spreadsheet reader (clinical build)
        with ValueWorkbook(bomb) as book:
            list(book.rows("dataset_info"))
    assert "billion laughs" in err2.value.what and str(bomb) in err2.value.where
    assert time.monotonic() - start < 5 and _peak_mb() - before < 100  # nothing was expanded


def test_billion_laughs_xlsx_cli_is_one_line(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    bomb = billion_laughs_xlsx(tmp_path / "bomb.xlsx")
    res = cli("validate", bomb)
    assert res.exit_code == 2
    [line] = res.stderr.strip().splitlines()
    assert line.startswith("error: ") and line.endswith(f"({bomb})")
    out = tmp_path / "t.parquet"
    res = cli("clinical", "build", "--source", f"duke={billion_laughs_xlsx(tmp_path / 'duke.xlsx', 'Data')}",
              "--out", out)  # fmt: skip
    assert res.exit_code != 0 and "billion laughs" in res.stderr and "duke.xlsx" in res.stderr
    assert "Traceback" not in res.stderr and not out.exists() and not list(tmp_path.glob("t.parquet*"))


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (YAML_BOMB, "uses the YAML alias *a0 (line 2); aliases are not accepted"),
        (YAML_OBJECT, "uses the YAML tag !!python/object/apply:os.system (line 2)"),
        ("name: x\nsize: !!binary aGVsbG8=\n", "uses the YAML tag !!binary"),
        ("base: &b {x: 1}\nother:\n  <<: *b\n", "uses the YAML alias *b"),
        ("a: " + "x" * (1 << 20) + "\n", "more than the 1048576-byte limit"),
    ],
    ids=["alias-bomb", "python-object", "binary-tag", "merge-key", "size-cap"],
)
def test_yaml_that_is_not_plain_data_is_refused(text, says, tmp_path: Path) -> None:
    from etl.yamlfile import load_yaml_mapping

    path = tmp_path / "mapping.yaml"
    path.write_text(text)
    start = time.monotonic()
    with pytest.raises(ConfigError) as err:
        load_yaml_mapping(path, "mapping file")
    assert says in err.value.what and err.value.where == str(path)
    assert time.monotonic() - start < 2 and not Path("/tmp/pwned").exists()


def test_yaml_bomb_as_release_definition_is_one_line_and_writes_nothing(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "def.yaml"
    path.write_text(YAML_BOMB)
    res = cli("release", "build", path, "--out", tmp_path / "rel")
    assert res.exit_code != 0
    [line] = res.stderr.strip().splitlines()
    assert "YAML alias" in line and line.endswith(f"({path})")
    assert not (tmp_path / "rel").exists()


def test_shipped_yaml_is_plain_data() -> None:
    """Every YAML the package ships loads under the restrictions (no aliases, no tags, small)."""
    from etl.resources import data_path
    from etl.yamlfile import load_yaml_mapping

    files = [p for d in ("schemas", "mappings", "release") for p in sorted(data_path(d).glob("*.yaml"))]
    assert len(files) >= 8
    for p in files:
        assert load_yaml_mapping(p, "shipped YAML")


def test_explicit_core_tags_still_load(tmp_path: Path) -> None:
    from etl.yamlfile import load_yaml_mapping

    (tmp_path / "ok.yaml").write_text("a: !!str 3\nb: !!int '4'\nc: &keep 5\n")  # an unused anchor is harmless
    assert load_yaml_mapping(tmp_path / "ok.yaml", "x") == {"a": "3", "b": 4, "c": 5}
