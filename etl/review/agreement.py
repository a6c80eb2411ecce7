"""Agreement between raters: Cohen's kappa on the four classes and on Good vs corrections needed.

Cohen's kappa = (p_o - p_e) / (1 - p_e): observed agreement corrected for the agreement two raters with the
same class frequencies would reach by chance. Computed here (numpy, a dozen lines) so the result does not
depend on scikit-learn; the tests check it equals ``sklearn.metrics.cohen_kappa_score``. When chance
agreement is already perfect (both raters used one and the same class for every case) kappa is undefined:
``None`` (JSON null), as scikit-learn's NaN.

MAMA-MIA reports 0.39 (four classes) and 0.53 (binary) for its two radiologists.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations
from typing import Any

import numpy as np

from etl.review.store import SCORES

BINARY = ("good", "needs_correction")


def binary(score: str) -> str:
    """Good vs corrections needed (acceptable, poor and missed all need an expert's hand)."""
    return "good" if score == "good" else "needs_correction"


def confusion(a: Sequence[str], b: Sequence[str], labels: Sequence[str]) -> np.ndarray:
    """Counts: rows = rater a's class, columns = rater b's, in ``labels`` order."""
    index = {lab: i for i, lab in enumerate(labels)}
    m = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for x, y in zip(a, b, strict=True):
        m[index[x], index[y]] += 1
    return m


def kappa_from_confusion(m: np.ndarray) -> float | None:
    n = float(m.sum())
    if n == 0:
        return None
    p_o = float(np.trace(m)) / n
    p_e = float((m.sum(axis=1) * m.sum(axis=0)).sum()) / (n * n)
    if p_e >= 1.0:
        return None
    return (p_o - p_e) / (1.0 - p_e)


def cohen_kappa(a: Sequence[str], b: Sequence[str], labels: Sequence[str] = SCORES) -> float | None:
    """Unweighted Cohen's kappa of two equally long label sequences."""
    return kappa_from_confusion(confusion(a, b, labels))


def pair_agreement(a: Sequence[str], b: Sequence[str]) -> dict[str, Any]:
    """Both kappas, both confusion matrices and the counts for one rater pair (paired by case)."""
    m4 = confusion(a, b, SCORES)
    a2, b2 = [binary(s) for s in a], [binary(s) for s in b]
    m2 = confusion(a2, b2, BINARY)
    return {
        "n_cases": len(a),
        "kappa_4class": kappa_from_confusion(m4),
        "kappa_binary": kappa_from_confusion(m2),
        "observed_agreement_4class": float(np.trace(m4)) / len(a) if len(a) else None,
        "observed_agreement_binary": float(np.trace(m2)) / len(a) if len(a) else None,
        "confusion": {"labels": list(SCORES), "matrix": m4.tolist()},
        "confusion_binary": {"labels": list(BINARY), "matrix": m2.tolist()},
    }


def agreement(ratings: Any) -> dict[str, Any]:
    """Per rater pair (sorted names) the agreement on the cases both rated, from a ratings frame with one
    (latest) row per (patient_id, rater) (``etl.review.store.read_ratings``)."""
    df = ratings[["patient_id", "rater", "score"]].astype(str)
    raters = sorted(df["rater"].unique())
    counts = {r: int((df["rater"] == r).sum()) for r in raters}
    pairs = []
    wide = df.pivot(index="patient_id", columns="rater", values="score")
    for r1, r2 in combinations(raters, 2):
        both = wide[[r1, r2]].dropna()
        res = {"rater_a": r1, "rater_b": r2, **pair_agreement(list(both[r1]), list(both[r2]))}
        pairs.append(res)
    out: dict[str, Any] = {"raters": raters, "ratings_per_rater": counts, "n_cases_rated": int(wide.shape[0]),
                           "pairs": pairs}
    if len(pairs) == 1:  # the usual two raters: their numbers at the top level as well
        out.update({k: v for k, v in pairs[0].items() if k not in out})
    return out


def agreement_text(result: dict[str, Any]) -> str:
    """A plain-text report: one block per rater pair."""
    def k(v: float | None) -> str:
        return "undefined" if v is None else f"{v:.3f}"

    lines = [f"raters: {', '.join(f'{r} ({n} cases)' for r, n in result['ratings_per_rater'].items())}"]
    if not result["pairs"]:
        lines.append("no rater pair: agreement needs ratings from at least two raters")
    for p in result["pairs"]:
        lines.append("")
        lines.append(f"{p['rater_a']} vs {p['rater_b']}: {p['n_cases']} cases rated by both")
        lines.append(f"  Cohen's kappa, 4 classes:              {k(p['kappa_4class'])}")
        lines.append(f"  Cohen's kappa, good vs needs correction: {k(p['kappa_binary'])}")
        labels = p["confusion"]["labels"]
        width = max(len(x) for x in labels) + 2
        lines.append(f"  confusion (rows {p['rater_a']}, columns {p['rater_b']}):")
        lines.append("  " + " " * width + "".join(f"{x:>{width}}" for x in labels))
        for lab, row in zip(labels, p["confusion"]["matrix"]):
            lines.append("  " + f"{lab:<{width}}" + "".join(f"{v:>{width}}" for v in row))
    return "\n".join(lines) + "\n"
