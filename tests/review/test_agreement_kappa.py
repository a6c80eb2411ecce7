"""Cohen's kappa: equal to scikit-learn's on random ratings, four classes and binary; CLI text and JSON."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from etl.review.agreement import agreement, binary, cohen_kappa, pair_agreement
from etl.review.store import SCORES, add_rating, open_store


@pytest.mark.parametrize("seed", range(8))
def test_kappa_equals_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 300))
    a = list(rng.choice(SCORES, size=n, p=[0.5, 0.3, 0.15, 0.05]))
    # b agrees with a most of the time, as two raters would
    b = [x if rng.random() < 0.6 else str(rng.choice(SCORES)) for x in a]
    res = pair_agreement(a, b)
    assert res["kappa_4class"] == pytest.approx(cohen_kappa_score(a, b), abs=1e-12)
    a2, b2 = [binary(x) for x in a], [binary(x) for x in b]
    assert res["kappa_binary"] == pytest.approx(cohen_kappa_score(a2, b2), abs=1e-12)
    assert res["n_cases"] == n
    m = np.array(res["confusion"]["matrix"])
    assert m.sum() == n and np.trace(m) == sum(x == y for x, y in zip(a, b))


def test_kappa_known_values_and_undefined() -> None:
    assert cohen_kappa(["good", "poor"], ["good", "poor"]) == pytest.approx(1.0)
    # textbook: 50 cases, p_o = 0.7, p_e = 0.5 -> 0.4
    a = ["good"] * 25 + ["poor"] * 25
    b = ["good"] * 20 + ["poor"] * 5 + ["good"] * 10 + ["poor"] * 15
    assert cohen_kappa(a, b) == pytest.approx(0.4) == pytest.approx(cohen_kappa_score(a, b))
    assert cohen_kappa(["good"] * 4, ["good"] * 4) is None  # chance agreement is perfect: undefined


def test_agreement_cli_json_and_text(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    db = open_store(tmp_path / "r.sqlite")
    rng = np.random.default_rng(3)
    a = list(rng.choice(SCORES, size=40))
    b = [x if i % 3 else "missed" for i, x in enumerate(a)]
    for i, (x, y) in enumerate(zip(a, b)):
        add_rating(db, f"DUKE_{i:03d}", "alice", "good")  # superseded: only the latest counts
        add_rating(db, f"DUKE_{i:03d}", "alice", x)
        add_rating(db, f"DUKE_{i:03d}", "bob", y)
    add_rating(db, "DUKE_999", "alice", "good")  # rated by one rater only: not in the pair
    res = cli("review", "agreement", tmp_path / "r.sqlite", "--format", "json")
    assert res.exit_code == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["n_cases"] == 40 and out["ratings_per_rater"] == {"alice": 41, "bob": 40}
    assert out["kappa_4class"] == pytest.approx(cohen_kappa_score(a, b))
    assert out["kappa_binary"] == pytest.approx(cohen_kappa_score([binary(x) for x in a], [binary(x) for x in b]))
    assert np.array(out["confusion"]["matrix"]).sum() == 40
    csv = tmp_path / "q.csv"
    assert cli("review", "export", "--db", tmp_path / "r.sqlite", "--out", csv).exit_code == 0
    text = cli("review", "agreement", csv)
    assert text.exit_code == 0
    assert f"{out['kappa_4class']:.3f}" in text.stdout and "alice vs bob: 40 cases" in text.stdout
    bad = cli("review", "agreement", tmp_path / "nothing.sqlite")
    assert bad.exit_code == 2 and bad.stderr.startswith("error: no such file")


def test_three_raters_give_three_pairs() -> None:
    import pandas as pd

    rows = [(f"C{i}", r, SCORES[(i + k) % 4]) for i in range(10) for k, r in enumerate(["x", "y", "z"])]
    res = agreement(pd.DataFrame(rows, columns=["patient_id", "rater", "score"]))
    assert [(p["rater_a"], p["rater_b"]) for p in res["pairs"]] == [("x", "y"), ("x", "z"), ("y", "z")]
    assert "kappa_4class" not in res  # several pairs: only per pair
