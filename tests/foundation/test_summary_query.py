"""`mamamia summary` reproduces the paper's counts; `mamamia query` filters with real semantics."""

from __future__ import annotations

import json

import pandas as pd
import pytest


def test_summary_reproduces_the_paper_table_1(v1_path, cli):
    res = cli("summary", v1_path, "--format", "json")
    assert res.exit_code == 0, res.stderr
    s = json.loads(res.stdout)
    assert s["n_cases"] == 1506
    o = s["overall"]
    assert o["age"] == {"<40": 317, "40-49": 491, "50-59": 465, "60-69": 199, ">=70": 31, "missing": 3}
    assert o["pcr"] == {"no": 1051, "yes": 440, "missing": 15}
    assert o["manufacturer"] == {"GE": 966, "Philips": 129, "SIEMENS": 411}
    assert o["view"] == {"axial": 1271, "sagittal": 235}
    assert o["dataset"] == {"DUKE": 291, "ISPY1": 171, "ISPY2": 980, "NACT": 64}
    assert set(s["by_dataset"]) == {"DUKE", "ISPY1", "ISPY2", "NACT"}
    for var in ("menopause", "ethnicity", "bmi_group", "tumor_subtype", "multifocal_cancer", "bilateral_breast_cancer",
                "hr", "er", "pr", "her2", "field_strength", "num_phases", "fat_suppressed", "bilateral_mri"):
        assert sum(o[var].values()) == 1506, var
        assert sum(sum(s["by_dataset"][d][var].values()) for d in s["by_dataset"]) == 1506, var


def test_summary_counts_follow_the_table(v1_table, tmp_path, cli):
    from etl.tables import write_table

    df = v1_table.copy()
    df.loc[df["patient_id"] == "DUKE_001", "age"] = 75  # 41 -> >=70
    write_table(df, tmp_path / "t.parquet")
    s = json.loads(cli("summary", tmp_path / "t.parquet", "--format", "json").stdout)
    assert s["overall"]["age"]["40-49"] == 490 and s["overall"]["age"][">=70"] == 32
    assert s["by_dataset"]["DUKE"]["age"][">=70"] == 12


def test_summary_text_is_readable(v1_path, cli):
    out = cli("summary", v1_path).stdout
    assert out.startswith("1506 cases (DUKE 291, ISPY1 171, ISPY2 980, NACT 64)")
    assert "<40      317 (21.0%)" in out


def test_query_where_matches_pandas(v1_table, v1_path, cli):
    res = cli("query", v1_path, "--where", "her2 == 1 and age < 50 and pcr == 1", "--format", "csv")
    assert res.exit_code == 0, res.stderr
    got = pd.read_csv(__import__("io").StringIO(res.stdout))
    t = v1_table
    mask = ((t["her2"] == 1) & (t["age"] < 50) & (t["pcr"] == 1)).fillna(False).astype(bool)
    expected = t.loc[mask, "patient_id"].tolist()
    assert got["patient_id"].tolist() == expected
    assert len(expected) > 50
    assert res.stderr.strip() == f"{len(expected)} cases"


def test_query_python_style_strings_and_json(v1_path, cli):
    res = cli("query", v1_path, "--where", 'tumor_subtype == "triple_negative" and dataset == "NACT"',
              "--format", "json", "--columns", "patient_id,tumor_subtype")
    rows = json.loads(res.stdout)
    assert rows and all(r["tumor_subtype"] == "triple_negative" and r["patient_id"].startswith("NACT_") for r in rows)
    assert len(rows) == 11


def test_query_sql(v1_path, cli):
    res = cli("query", v1_path, "--sql", "SELECT view, count(*) AS n FROM cases GROUP BY view ORDER BY view",
              "--format", "json")
    assert json.loads(res.stdout) == [{"view": "axial", "n": 1271}, {"view": "sagittal", "n": 235}]


def test_query_unknown_column_is_named(v1_path, cli):
    res = cli("query", v1_path, "--where", "her2 == 1 and agee < 50")
    assert res.exit_code == 2  # a usage error
    assert res.stderr.strip() == "error: unknown column 'agee'; did you mean age? (--where)"


def test_query_invalid_expression(v1_path, cli):
    res = cli("query", v1_path, "--where", "her2 === 1")
    assert res.exit_code == 2 and res.stderr.startswith("error: invalid expression")
    res = cli("query", v1_path, "--where", "pcr == 1", "--columns", "nope")
    assert res.exit_code == 2 and "unknown column(s) nope" in res.stderr


@pytest.fixture(scope="module")
def v1_parquet(v1_table, tmp_path_factory):
    """The v1 table as Parquet: the same rows, read in a fraction of the xlsx time (many CLI calls below)."""
    from etl.tables import write_table

    return write_table(v1_table, tmp_path_factory.mktemp("v1") / "clinical_and_imaging_info.parquet")


def test_query_hints_a_spelling_that_matches_in_another_case(v1_table, v1_parquet, cli):
    v1_path = v1_parquet
    res = cli("query", v1_path, "--where", "manufacturer == 'Siemens'")
    assert res.exit_code == 0 and res.stderr.splitlines()[0] == "0 cases"
    assert "hint: no manufacturer is 'Siemens'; did you mean 'SIEMENS'?" in res.stderr
    n = int((v1_table["manufacturer"] == "SIEMENS").sum())
    res = cli("query", v1_path, "--where", "manufacturer == 'SIEMENS'")
    assert res.stderr.strip() == f"{n} cases"  # an exact match: no hint
    # an in-list, a double-quoted Python habit and trailing spaces in the data (scanner_model 'SIGNA HDx ')
    res = cli("query", v1_path, "--where", "ethnicity in ('asian', 'Caucasian') or scanner_model == \"SIGNA HDx\"")
    hints = [ln for ln in res.stderr.splitlines() if ln.startswith("hint: ")]
    assert hints == ["hint: no scanner_model is 'SIGNA HDx'; did you mean 'SIGNA HDx '?",
                     "hint: no ethnicity is 'Caucasian'; did you mean 'caucasian'?"]


def test_query_table_shortens_release_paths_but_csv_keeps_them(tmp_path, cli):
    """On a release the table shows paths relative to it, phases as first file +N; CSV has every full path."""
    import io

    from tests.release.release_helpers import make_staged
    from etl.release.build import build_release
    from etl.release.definition import load_definition

    staged = make_staged(tmp_path)
    rel = tmp_path / "rel"
    build_release(load_definition(staged.definition), rel, verify=False)
    res = cli("query", rel, "--where", "patient_id == 'DUKE_001'")
    assert res.exit_code == 0, res.stderr
    row = next(ln for ln in res.stdout.splitlines() if ln.startswith("DUKE_001"))
    n = len(list((rel / "images" / "DUKE_001").glob("*.nii.gz")))
    assert f"images/DUKE_001/duke_001_0000.nii.gz +{n - 1}" in row and str(rel) not in row
    assert "paths relative to" in res.stderr
    res = cli("query", rel, "--where", "patient_id == 'DUKE_001'", "--format", "csv")
    full = pd.read_csv(io.StringIO(res.stdout))
    paths = full.loc[0, "image_paths"].split(";")
    assert len(paths) == n and all(p.startswith(str(rel.resolve())) for p in paths)


def test_summary_normalized_by_default_raw_on_request(v1_table, v1_parquet, cli):
    v1_path = v1_parquet
    norm = json.loads(cli("summary", v1_path, "--format", "json").stdout)
    raw = json.loads(cli("summary", v1_path, "--format", "json", "--raw").stdout)
    assert norm["labels"] == "normalized" and raw["labels"] == "raw"
    # menopause: the ISPY2 long definitions count under their first word
    meno = v1_table["menopause"].astype("string").str.strip().str.split().str[0]
    assert norm["overall"]["menopause"] == {"pre": int((meno == "pre").sum()), "peri": int((meno == "peri").sum()),
                                            "post": int((meno == "post").sum()),
                                            "missing": int(v1_table["menopause"].isna().sum())}
    assert len(raw["overall"]["menopause"]) == 6 and max(map(len, raw["overall"]["menopause"])) > 90
    assert "hawaian" in raw["overall"]["ethnicity"] and "hawaian" not in norm["overall"]["ethnicity"]
    assert norm["overall"]["ethnicity"]["american indian/alaskan native"] == sum(
        raw["overall"]["ethnicity"].get(k, 0) for k in ("american indian/alaskan native", "american indian", "native american"))
    assert norm["normalized_values"]["menopause"] == 512
    text = cli("summary", v1_path).stdout
    assert "labels normalized by mappings/normalize.yaml" in text and "hawaian" not in text


def test_summary_median_and_iqr_match_pandas(v1_table, v1_parquet, cli):
    v1_path = v1_parquet
    s = json.loads(cli("summary", v1_path, "--format", "json").stdout)["continuous"]
    t = v1_table
    bmi = pd.to_numeric(t["weight"]) / pd.to_numeric(t["patient_size"]) ** 2
    for name, values in (("age", pd.to_numeric(t["age"])), ("bmi", bmi),
                         ("days_to_follow_up", pd.to_numeric(t["days_to_follow_up"]))):
        known = values.dropna().astype(float)
        got = s[name]["overall"]
        assert got["n"] == len(known) and got["missing"] == len(t) - len(known), name
        assert got["median"] == round(float(known.median()), 2), name
        assert (got["q1"], got["q3"]) == (round(float(known.quantile(0.25)), 2), round(float(known.quantile(0.75)), 2))
    duke = pd.to_numeric(t.loc[t["dataset"] == "DUKE", "age"]).dropna().astype(float)
    assert s["age"]["by_dataset"]["DUKE"]["median"] == round(float(duke.median()), 2)
    assert s["age"]["unit"] == "years" and s["bmi"]["unit"] == "kg/m^2"
    text = cli("summary", v1_path).stdout
    assert f"age (years)" in text and f"{float(known.median()):g}" in text


def test_csv_with_semicolons_or_tabs_is_sniffed(v1_table, tmp_path, cli):
    from etl.tables import read_table

    for sep, name in ((";", "semi.csv"), ("\t", "tabs.csv")):
        path = tmp_path / name
        v1_table.to_csv(path, sep=sep, index=False)
        assert read_table(path).equals(v1_table), name
        res = cli("validate", path, "--summary")
        assert res.exit_code == 0 and "valid: 1506 rows, 0 errors" in res.stdout, res.stdout[-500:]
