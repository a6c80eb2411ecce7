"""The review loop of ``mamamia demo``, with scripted people: two raters and three experts.

Why scripted and not mocked: the demo is the end-to-end check of the loop, so the raters go through the real
rating app (Starlette served by uvicorn on 127.0.0.1, ``POST /api/ratings``), and the experts' corrections
through the real ``review assign`` / ``review import`` commands. Only the people are simulated:

- a rater's verdict follows the automatic mask's Dice against the phantom truth (good >= 0.85, acceptable
  >= 0.70, poor >= 0.30, else missed), and each rater, with its own seeded generator, moves a verdict one
  class up or down now and then (``DISAGREE``), so the two raters agree often but not always (a kappa that
  is neither 0 nor 1);
- an expert's "correction" is the phantom truth, saved over the package's mask as a viewer would.
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from etl.contracts import RATINGS
from etl.errors import EtlError
from etl.layout import Layout
from etl.review.assign import STRATA

THRESHOLDS = ((0.85, "good"), (0.70, "acceptable"), (0.30, "poor"))
DISAGREE = 0.25  # probability that a scripted rater moves its verdict by one class
SCORES = STRATA[:4]


def scripted_score(dice: float | None, rng: random.Random) -> str:
    """A rater's verdict on a mask of this Dice (see the module docstring)."""
    base = next((s for t, s in THRESHOLDS if dice is not None and dice >= t), "missed")
    i = SCORES.index(base)
    if rng.random() < DISAGREE:
        i = min(max(i + rng.choice((-1, 1)), 0), len(SCORES) - 1)
    return SCORES[i]


def truth_dice(staged: Layout, truth: Layout, patient_ids: list[str]) -> dict[str, float | None]:
    """Dice of each automatic mask against the phantom truth (None when either file is missing)."""
    import numpy as np

    from etl.segment.io import read_array
    from etl.segment.metrics import dice

    out: dict[str, float | None] = {}
    for pid in patient_ids:
        a, t = staged.automatic_mask(pid), truth.expert_mask(pid)
        if a.exists() and t.exists():
            auto, ref = read_array(a, np.float32) > 0, read_array(t, np.float32) > 0
            out[pid] = dice(auto, ref) if auto.shape == ref.shape else None
        else:
            out[pid] = None
    return out


def rate_through_app(staged: Path, db: Path, raters: list[str], dice_of: dict[str, float | None],
                     seed: int) -> dict[str, dict[str, str]]:
    """Every rater rates every case through its own running app (uvicorn on 127.0.0.1, an ephemeral port)."""
    import httpx

    from etl.review.app import create_app
    from etl.review.server import running_server

    given: dict[str, dict[str, str]] = {}
    for k, rater in enumerate(raters):
        rng = random.Random(f"demo-rater:{seed}:{k}")
        app = create_app(staged, db, rater, blind=True)
        given[rater] = {}
        with running_server(app) as base, httpx.Client(base_url=base, timeout=30.0) as client:
            for pid in sorted(dice_of):
                score = scripted_score(dice_of[pid], rng)
                r = client.post("/api/ratings", json={"patient_id": pid, "score": score})
                if r.status_code != 200:
                    raise EtlError(f"rating app answered {r.status_code}: {r.text[:200]}", f"{base}/api/ratings ({pid})")
                given[rater][pid] = score
    return given


def correct_with_truth(packages: Path, truth: Layout) -> dict[str, int]:
    """Each expert's "correction": the phantom truth saved over the package's mask. Cases per expert."""
    from etl.review.packages import read_manifest

    done: dict[str, int] = {}
    for folder in sorted(p for p in packages.iterdir() if p.is_dir()):
        rows = read_manifest(folder)
        for pid in rows:
            shutil.copyfile(truth.expert_mask(pid), folder / f"{pid}_mask.nii.gz")
        done[folder.name] = len(rows)
    return done


def review_loop(mamamia: Callable[..., None], echo: Callable[[str], None], staged: Path, truth: Path, work: Path,
                figures: Path, seed: int, n_experts: int = 3) -> dict[str, Any]:
    """Ratings by two raters through the app, kappa, export, assignment, corrections imported, figures."""
    from etl.review.agreement import agreement
    from etl.review.store import read_ratings

    staged_layout, truth_layout = Layout.from_definition(staged), Layout.from_definition(truth)
    db = work / "review.sqlite"
    from etl.review.cases import load_cases

    ids = load_cases(staged).ids()
    dice_of = truth_dice(staged_layout, truth_layout, ids)
    rate_through_app(staged, db, ["rater_a", "rater_b"], dice_of, seed)
    result = agreement(read_ratings(db))
    k4, k2 = result.get("kappa_4class"), result.get("kappa_binary")
    fmt = lambda v: "undefined" if v is None else f"{v:.2f}"  # noqa: E731
    echo(f"[demo]   2 raters x {len(ids)} cases through the rating app: Cohen's kappa {fmt(k4)} (4 classes), "
         f"{fmt(k2)} (good vs needs correction)")
    mamamia("review", "agreement", db)
    mamamia("review", "export", "--db", db, "--out", staged / RATINGS)
    packages = work / "packages"
    if packages.exists():
        shutil.rmtree(packages)
    # the staged expert masks are the previous release's: every case goes to an expert again (--all)
    mamamia("review", "assign", staged, "--experts", str(n_experts), "--db", db, "--seed", seed, "--all",
            "--out", packages)
    done = correct_with_truth(packages, truth_layout)
    for expert in sorted(done):
        mamamia("review", "import", packages / expert, "--into", staged, "--expert", expert, "--db", db, "--replace")
    mamamia("review", "figures", staged, "--out", figures)
    echo(f"[demo]   {sum(done.values())} cases corrected by {len(done)} experts "
         f"({', '.join(f'{e} {n}' for e, n in sorted(done.items()))}); figures in {figures}")
    return {"kappa_4class": k4, "kappa_binary": k2, "assigned": done}
