"""Blinded, balanced assignment of cases to the experts who correct their automatic masks.

Why balanced: MAMA-MIA gave each of its 16 experts 70 cases with the same mix of rated quality so that no
expert got all the hard ones (a correction's size depends as much on the case as on the expert, and the
paper compares corrections per quality class). Here every expert gets the same number of cases (+-1), the
same number of each quality stratum (+-1; unrated cases are a stratum of their own) and, as far as the
strata allow, the same number of each dataset (+-1).

How: cases are shuffled with the seed inside each (stratum, dataset) cell, laid out stratum by stratum,
dataset by dataset, and dealt round-robin in one continuous sequence: a contiguous block of a round-robin
deal gives every expert the floor or ceiling of its share, so totals, strata and cells are all within +-1.
Dataset totals across strata can still drift; swaps of two same-stratum cases between two experts (which
keep totals and strata unchanged) then lower the dataset imbalance until no swap helps. Everything depends
only on the input records and the seed, never on dict or file-system order.

The function is pure (records in, assignment out); reading ratings and writing packages live elsewhere.
"""

from __future__ import annotations

import random
import re
from collections import Counter, defaultdict
from dataclasses import dataclass

from etl.errors import ConfigError, UsageError

UNRATED = "unrated"
# quality strata in display order (the rating app's four scores, then cases nobody rated yet)
STRATA = ("good", "acceptable", "poor", "missed", UNRATED)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@dataclass(frozen=True)
class CaseRecord:
    """What the assignment may look at: never the mask, its score is only used to stratify."""

    patient_id: str
    dataset: str
    stratum: str = UNRATED


@dataclass(frozen=True)
class Assignment:
    patient_id: str
    expert: str
    dataset: str
    stratum: str


def expert_names(spec: str) -> list[str]:
    """``--experts``: a count (``3`` -> expert_01..expert_03) or comma-separated names (folder-safe)."""
    text = spec.strip()
    if text.isdigit():
        n = int(text)
        if n < 1:
            raise UsageError("--experts must be at least 1", "--experts")
        width = max(2, len(str(n)))
        return [f"expert_{i:0{width}d}" for i in range(1, n + 1)]
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise UsageError("--experts needs a number or comma-separated names", "--experts")
    bad = [n for n in names if not _NAME.fullmatch(n)]
    if bad:
        raise UsageError(f"expert name {bad[0]!r} is not usable as a folder name (letters, digits, . _ -; "
                          "starting with a letter or digit)", "--experts")
    dupes = sorted(n for n, c in Counter(n.lower() for n in names).items() if c > 1)
    if dupes:
        raise UsageError(f"expert name {dupes[0]!r} given twice", "--experts")
    return names


def _stratum_rank(stratum: str) -> tuple[int, str]:
    return (STRATA.index(stratum), "") if stratum in STRATA else (len(STRATA), stratum)


def _cells(records: list[CaseRecord], rng: random.Random) -> list[list[CaseRecord]]:
    """Cases grouped by (stratum, dataset) in a fixed order, shuffled inside each cell."""
    cells: dict[tuple[str, str], list[CaseRecord]] = defaultdict(list)
    for r in sorted(records, key=lambda r: r.patient_id):
        cells[(r.stratum, r.dataset)].append(r)
    out = []
    for key in sorted(cells, key=lambda k: (_stratum_rank(k[0]), k[1])):
        members = cells[key]
        rng.shuffle(members)
        out.append(members)
    return out


def _select(cells: list[list[CaseRecord]], n: int) -> list[list[CaseRecord]]:
    """A proportional stratified subset of ``n`` cases (systematic: the i-th case of a cell of size m sits at
    (i + 1/2) / m, the smallest positions are taken), keeping the cell structure."""
    total = sum(len(c) for c in cells)
    if n >= total:
        return cells
    ranked = sorted(((i + 0.5) / len(cell), ci, i) for ci, cell in enumerate(cells) for i in range(len(cell)))
    keep = {(ci, i) for _, ci, i in ranked[:n]}
    return [[r for i, r in enumerate(cell) if (ci, i) in keep] for ci, cell in enumerate(cells)]


def assign(records: list[CaseRecord], experts: list[str], seed: int = 0,
           per_expert: int | None = None) -> list[Assignment]:
    """Spread ``records`` over ``experts`` (see the module docstring); at most ``per_expert`` each.

    Returns one Assignment per assigned case, sorted by expert then patient id. With ``per_expert`` and more
    cases than ``per_expert * len(experts)``, a stratified subset is assigned and the rest left for a later
    round.
    """
    if not experts:
        raise UsageError("no experts to assign to", "--experts")
    if per_expert is not None and per_expert < 1:
        raise UsageError("--per-expert must be at least 1", "--per-expert")
    ids = [r.patient_id for r in records]
    if len(set(ids)) != len(ids):
        dup = next(p for p, c in Counter(ids).items() if c > 1)
        raise ConfigError(f"case {dup} listed twice", dup)
    rng = random.Random(f"mamamia-assign:{seed}")
    cells = _cells(list(records), rng)
    if per_expert is not None:
        cells = _select(cells, per_expert * len(experts))
    order = list(experts)
    rng.shuffle(order)  # who gets the first (extra) case of the deal is up to the seed, not the name
    owner: dict[str, str] = {}
    k = 0
    by_id: dict[str, CaseRecord] = {}
    for cell in cells:
        for r in cell:
            owner[r.patient_id] = order[k % len(order)]
            by_id[r.patient_id] = r
            k += 1
    _balance_datasets(owner, by_id, order)
    return sorted((Assignment(pid, owner[pid], by_id[pid].dataset, by_id[pid].stratum) for pid in owner),
                  key=lambda a: (experts.index(a.expert), a.patient_id))


def _balance_datasets(owner: dict[str, str], by_id: dict[str, CaseRecord], experts: list[str]) -> None:
    """Swap same-stratum cases between two experts while that lowers the sum of squared dataset counts.

    A swap of (stratum s, dataset d) from expert a with (s, d') from expert b moves one d from a to b and
    one d' from b to a; totals and stratum counts stay as they are. Each accepted swap lowers the potential
    strictly (by at least 2), so the loop ends. The largest-gain swap is taken first, ties in a fixed order.
    """
    count: Counter[tuple[str, str]] = Counter((owner[p], by_id[p].dataset) for p in owner)
    held: dict[tuple[str, str, str], list[str]] = defaultdict(list)  # (expert, stratum, dataset) -> cases
    for p in sorted(owner):
        held[(owner[p], by_id[p].stratum, by_id[p].dataset)].append(p)
    datasets = sorted({r.dataset for r in by_id.values()})
    strata = sorted({r.stratum for r in by_id.values()}, key=_stratum_rank)
    while True:
        candidates = []
        for a in experts:
            for b in experts:
                for d in datasets:
                    over = count[(a, d)] - count[(b, d)]
                    if a == b or over < 2:
                        continue
                    for d2 in datasets:
                        under = count[(b, d2)] - count[(a, d2)]
                        if d2 != d and under >= 1:
                            candidates.append((-(over + under), experts.index(a), experts.index(b), d, d2))
        for _, ia, ib, d, d2 in sorted(candidates):
            a, b = experts[ia], experts[ib]
            s = next((s for s in strata if held[(a, s, d)] and held[(b, s, d2)]), None)
            if s is not None:
                break
        else:
            return
        pa, pb = held[(a, s, d)].pop(0), held[(b, s, d2)].pop(0)
        owner[pa], owner[pb] = b, a
        held[(b, s, d)].append(pa)
        held[(a, s, d2)].append(pb)
        held[(b, s, d)].sort()
        held[(a, s, d2)].sort()
        count[(a, d)] -= 1
        count[(b, d)] += 1
        count[(b, d2)] -= 1
        count[(a, d2)] += 1


def balance_table(assignments: list[Assignment], experts: list[str]) -> list[dict[str, object]]:
    """Per expert: total and counts per stratum and per dataset (what `review assign` prints)."""
    strata = sorted({a.stratum for a in assignments}, key=_stratum_rank)
    datasets = sorted({a.dataset for a in assignments})
    rows = []
    for e in experts:
        mine = [a for a in assignments if a.expert == e]
        row: dict[str, object] = {"expert": e, "cases": len(mine)}
        row.update({s: sum(a.stratum == s for a in mine) for s in strata})
        row.update({d: sum(a.dataset == d for a in mine) for d in datasets})
        rows.append(row)
    return rows
