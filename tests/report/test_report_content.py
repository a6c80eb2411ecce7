"""What the data card says equals what the other commands say for the same input, and the same input gives
the same bytes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.report.conftest import RATINGS
from tests.report.report_html import counts, parse


def _expected_counts(summary: dict) -> dict[tuple[str, str, str], int]:
    out = {}
    for var, labels in summary["overall"].items():
        if var == "dataset":  # shown in the overview
            continue
        for label, n in labels.items():
            out[(var, "overall", label)] = n
            for ds, per in summary["by_dataset"].items():
                out[(var, ds, label)] = per[var].get(label, 0)
    return out


def test_cohort_tables_equal_summary_json(cli, report_release: Path) -> None:
    res = cli("summary", report_release, "--format", "json")
    assert res.exit_code == 0, res.stderr
    summary = json.loads(res.stdout)
    card = parse((report_release / "report.html").read_text(encoding="utf-8"))
    assert counts(card) == _expected_counts(summary)
    stats = {(c["var"], c["dataset"], c["stat"]): c["_text"] for c in card.cells if "stat" in c}
    assert summary["continuous"], "the summary reports medians"
    for var, entry in summary["continuous"].items():
        for ds, s in [("overall", entry["overall"]), *entry["by_dataset"].items()]:
            if s["n"]:
                assert stats[(var, ds, "n")] == str(s["n"])
                assert stats[(var, ds, "median")] == f"{s['median']:g}"
                assert stats[(var, ds, "IQR")] == f"{s['q1']:g}-{s['q3']:g}"


def test_same_inputs_same_bytes_and_checksummed(report_release: Path) -> None:
    from etl.release.manifest import read_manifest, sha256_file
    from etl.release.verify import verify_release
    from etl.report import build_report

    data = (report_release / "report.html").read_bytes()
    # written by the build in <out>.partial/, rebuilt here from the published directory: same bytes
    assert build_report(report_release, verify="build").encode("utf-8") == data
    assert read_manifest(report_release)["report.html"] == sha256_file(report_release / "report.html")
    assert verify_release(report_release) == []
    assert str(report_release) not in data.decode("utf-8")  # no machine path in the card


def test_segmentation_numbers(report_release: Path) -> None:
    from etl.review.agreement import agreement

    card = parse((report_release / "report.html").read_text(encoding="utf-8"))
    ratings = pd.DataFrame(RATINGS, columns=["patient_id", "rater", "score"])
    pair = agreement(ratings)["pairs"][0]
    kappas = {c["kappa"]: c["_text"] for c in card.cells if "kappa" in c}
    assert kappas == {"4class": f"{pair['kappa_4class']:.2f}", "binary": f"{pair['kappa_binary']:.2f}"}
    scores = {c["score"]: int(c["_text"]) for c in card.cells if "score" in c}
    assert scores == {s: sum(1 for _, _, x in RATINGS if x == s) for s in ("good", "acceptable", "poor", "missed")}
    # the worst cases by Dice are the QC table's lowest, in order
    qc = pd.read_parquet(report_release / "segmentation_qc.parquet").dropna(subset=["dice"])
    worst = qc.sort_values(["dice", "patient_id"]).head(10)
    shown = [(c["patient"], float(c["dice"])) for c in card.cells if "dice" in c]
    assert [p for p, _ in shown] == list(worst["patient_id"])
    assert np.allclose([d for _, d in shown], worst["dice"].astype(float))


def test_v1_table_alone(cli, v1_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "v1.html"
    res = cli("report", v1_path, "--out", out)
    assert res.exit_code == 0, res.stderr
    assert f"report: {out}" in res.stdout
    html = out.read_text(encoding="utf-8")
    card = parse(html)
    assert card.sections == ["overview", "cohort", "imaging", "validation"]
    assert card.images and not any(src.startswith("data:image/png") for src in card.images)  # charts, no slices
    summary = json.loads(cli("summary", v1_path, "--format", "json").stdout)
    assert counts(card) == _expected_counts(summary)
    assert sum(v for (_, ds, _), v in counts(card).items() if ds == "overall") > 0
    validated = json.loads(cli("validate", v1_path, "--format", "json", "--max", "0").stdout)
    found = {(c["severity"], c["rule"]): int(c["count"]) for c in card.cells if "rule" in c}
    assert found == {(sev, rule): n for sev, rules in validated["counts"].items() for rule, n in rules.items()}
    assert "not in this report: splits" in html


def test_segmentations_with_expert_corrections(report_release: Path, tmp_path: Path) -> None:
    """A release carrying segmentations/corrections.parquet: the corrections table per quality class."""
    from etl.report import segmentations
    from etl.report.source import load_source

    rel = tmp_path / "rel"
    shutil.copytree(report_release, rel)
    corr = pd.DataFrame({"patient_id": ["DUKE_001", "DUKE_002", "ISPY1_1001"], "expert": ["e1", "e1", "e2"],
                         "added_cm3": [0.5, 1.0, 2.0], "removed_cm3": [0.1, 0.2, 0.3], "dice": [0.9, 0.8, 0.5],
                         "hd95_mm": [1.0, 2.0, 6.0], "quality": ["good", "acceptable", None]})
    corr.to_parquet(rel / "segmentations" / "corrections.parquet")
    sec, absent = segmentations.section(load_source(rel))
    assert sec is not None and absent == []
    block = next(b for b in sec.blocks if b.title.startswith("Expert corrections"))
    rows = {r[0].text: r for r in block.table.rows}
    assert rows["all"][1].text == "3" and rows["good"][1].text == "1" and rows["not rated"][1].text == "1"
    assert rows["all"][4].text.startswith("0.8 ")  # median Dice of 0.9, 0.8, 0.5


def test_gallery_choice_is_seeded_and_spread() -> None:
    from etl.report.gallery import choose

    df = pd.DataFrame({"patient_id": [f"C{i}" for i in range(12)], "dataset": ["A"] * 6 + ["B"] * 6,
                       "view": ["axial", "sagittal"] * 6})
    ids = set(df["patient_id"])
    one_each = choose(df, None, 0, ids)
    assert len(one_each) == 4
    assert {(df.set_index("patient_id").loc[p, "dataset"], df.set_index("patient_id").loc[p, "view"]) for p in one_each} \
        == {("A", "axial"), ("A", "sagittal"), ("B", "axial"), ("B", "sagittal")}
    assert choose(df, None, 0, ids) == one_each and choose(df, 7, 3, ids) == choose(df, 7, 3, ids)
    assert len(choose(df, 7, 3, ids)) == 7 and len(set(choose(df, 50, 3, ids))) == 12
    assert choose(df, None, 0, {"C0"}) == ["C0"]


@pytest.mark.parametrize("args, code, text", [
    (["missing.xlsx"], 2, "input not found"),
    (["{dir}"], 1, "neither a release nor a staged directory"),
    (["{dir}", "--gallery", "-1"], 2, ""),
])
def test_expected_faults_are_one_line(cli, tmp_path: Path, args: list[str], code: int, text: str) -> None:
    res = cli("report", *[a.format(dir=tmp_path) for a in args], "--out", tmp_path / "r.html")
    assert res.exit_code == code
    assert text in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "r.html").exists()
