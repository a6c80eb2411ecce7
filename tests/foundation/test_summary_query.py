"""`mamamia summary` reproduces the paper's counts; `mamamia query` filters with real semantics."""

from __future__ import annotations

import json

import pandas as pd


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
    assert res.exit_code == 1
    assert res.stderr.strip() == "error: unknown column 'agee'; did you mean age? (--where)"


def test_query_invalid_expression(v1_path, cli):
    res = cli("query", v1_path, "--where", "her2 === 1")
    assert res.exit_code == 1 and res.stderr.startswith("error: invalid expression")
    res = cli("query", v1_path, "--where", "pcr == 1", "--columns", "nope")
    assert res.exit_code == 1 and "unknown column(s) nope" in res.stderr
