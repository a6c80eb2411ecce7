"""Train/test split and cross-validation folds, stratified so every collection x response x subtype mix is
represented in both parts.

Why stratify on these three: pCR prevalence and subtype mix differ strongly between the four collections
(ISPY2 is 2/3 of the cases), so an unstratified split can leave a small collection's responders entirely in
one part. Missing values are a stratum of their own (they are real, not noise). Strata too small to be
split (fewer cases than ``min_stratum``) are pooled with their siblings one level up: first the subtype is
dropped (``DUKE|pcr=1|*``), then the response (``DUKE|*|*``), then the collection (``*``); every merge is
reported. Determinism: each stratum is shuffled by its own generator seeded from (seed, stratum key), so a
case's assignment depends only on its stratum, not on unrelated strata.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd

from etl.errors import ConfigError, ValidationFailed
from etl.contracts import DEFAULT_CASE_ID, NNUNET_SPLITS, check_case_id_template, nnunet_case_id
from etl.types import StrPath

STRATA_COLUMNS: tuple[str, ...] = ("dataset", "pcr", "tumor_subtype")
MISSING = "missing"
POOLED = "*"


@dataclass(frozen=True)
class SplitSettings:
    """How to split; the release definition's ``split:`` section maps onto these fields."""

    seed: int = 42
    test_fraction: float = 0.2
    folds: int = 5
    min_stratum: int | None = None  # default: enough cases for one test case and one per fold
    nnunet_case_id: str = DEFAULT_CASE_ID  # nnU-Net case identifier (etl.contracts.nnunet_case_id)

    def __post_init__(self) -> None:
        if not 0.0 < self.test_fraction < 1.0:
            raise ConfigError(f"test_fraction must be between 0 and 1, got {self.test_fraction}", "split.test_fraction")
        if self.folds < 2:
            raise ConfigError(f"folds must be at least 2, got {self.folds}", "split.folds")

    @property
    def effective_min_stratum(self) -> int:
        if self.min_stratum is not None:
            return max(1, int(self.min_stratum))
        return max(self.folds, math.ceil(1.0 / self.test_fraction))

    @classmethod
    def from_mapping(cls, data: dict | None) -> SplitSettings:
        data = dict(data or {})
        known = {"seed", "test_fraction", "folds", "min_stratum", "nnunet_case_id"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown split settings: {', '.join(unknown)}", "split")
        kinds = {"seed": int, "test_fraction": float, "folds": int, "min_stratum": int, "nnunet_case_id": str}
        values: dict[str, Any] = {}
        for key, value in data.items():
            if value is None and key == "min_stratum":
                values[key] = None
                continue
            kind = kinds[key]
            ok = isinstance(value, str) if kind is str else (
                isinstance(value, (int, float)) and not isinstance(value, bool)
                and (kind is float or float(value).is_integer()))
            if not ok:
                raise ConfigError(f"{key} must be {'an integer' if kind is int else ('a number' if kind is float else 'text')}, "
                                  f"got {value!r}", f"split.{key}")
            values[key] = kind(value)
        if values.get("nnunet_case_id") is not None:
            check_case_id_template(values["nnunet_case_id"])
        return cls(**values)


@dataclass
class SplitResult:
    """Assignments plus what had to be merged, for the balance report and provenance."""

    assignments: pd.DataFrame  # patient_id, split, fold (Int64, <NA> for test), stratum, original_stratum
    merges: dict[str, str] = field(default_factory=dict)  # original stratum -> stratum it was pooled into
    settings: SplitSettings = field(default_factory=SplitSettings)

    def frame(self) -> pd.DataFrame:
        """The published columns: patient_id, split, fold."""
        return self.assignments[["patient_id", "split", "fold"]].reset_index(drop=True)

    def balance(self) -> pd.DataFrame:
        """Per final stratum: cases, train, test, test share."""
        a = self.assignments
        tab = (
            a.groupby(["stratum", "split"], sort=True).size().unstack("split", fill_value=0)
            .reindex(columns=["train", "test"], fill_value=0)
        )
        tab["n"] = tab["train"] + tab["test"]
        tab["test_share"] = (tab["test"] / tab["n"]).round(3)
        return tab[["n", "train", "test", "test_share"]].reset_index()

    def nnunet_splits(self) -> list[dict[str, list[str]]]:
        """nnU-Net v2 ``splits_final.json`` content: one {train, val} per fold over the training cases."""
        train = self.assignments[self.assignments["split"] == "train"]
        ids = [nnunet_case_id(pid, self.settings.nnunet_case_id) for pid in train["patient_id"]]
        folds = train["fold"].astype(int).tolist()
        out = []
        for k in range(self.settings.folds):
            out.append(
                {
                    "train": sorted(i for i, f in zip(ids, folds) if f != k),
                    "val": sorted(i for i, f in zip(ids, folds) if f == k),
                }
            )
        return out


def _label(value: object, column: str) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    if column == "pcr":
        try:
            return str(int(float(cast(Any, value))))  # 1, 1.0 and "1" are the same response
        except (TypeError, ValueError):
            return str(value).strip().lower() or MISSING
    text = str(value).strip().lower()
    return text or MISSING


def stratum_keys(table: pd.DataFrame, columns: Sequence[str] = STRATA_COLUMNS) -> pd.Series:
    """One key per row such as ``DUKE|1|luminal_a`` (missing values spelled ``missing``)."""
    missing = [c for c in ("patient_id", *columns) if c not in table.columns]
    if missing:
        raise ValidationFailed(f"table lacks column(s) needed for the split: {', '.join(missing)}", "table")
    parts = [table[c].astype(object).map(lambda v, c=c: _label(v, c)) for c in columns]
    # dataset keeps its published spelling (upper case) so keys read like the table
    if columns and columns[0] == "dataset":
        parts[0] = table["dataset"].astype(object).map(lambda v: MISSING if _label(v, "dataset") == MISSING else str(v).strip())
    keys = parts[0].astype(str)
    for p in parts[1:]:
        keys = keys + "|" + p.astype(str)
    return keys


def _coarsen(key: str, level: int) -> str:
    """Replace the last ``level`` parts of a key by ``*``."""
    parts = key.split("|")
    keep = max(0, len(parts) - level)
    return "|".join(parts[:keep] + [POOLED] * (len(parts) - keep))


def _shared_prefix(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a.split("|"), b.split("|")):
        if x != y or x == POOLED:
            break
        n += 1
    return n


def merge_small_strata(keys: pd.Series, min_size: int) -> tuple[pd.Series, dict[str, str]]:
    """Pool strata smaller than ``min_size`` with their small siblings, one level coarser at a time.

    Pooling stops at the collection level (collections are never mixed by pooling); a pooled bucket that is
    still too small then joins the smallest adequate stratum it shares the longest prefix with (same
    collection and response if possible).
    """
    current = keys.copy()
    n_levels = len(str(keys.iloc[0]).split("|")) if len(keys) else 0
    for level in range(1, n_levels):
        counts = current.value_counts()
        small = set(counts[counts < min_size].index)
        if not small:
            break
        current = current.map(lambda k: _coarsen(k, level) if k in small else k)
    counts = current.value_counts()
    too_small = sorted(counts[counts < min_size].index)
    adequate = {str(k): int(v) for k, v in counts.items() if v >= min_size}
    if too_small and adequate:
        target = {}
        for k in too_small:
            best = max(_shared_prefix(k, a) for a in adequate)
            target[k] = min((a for a in adequate if _shared_prefix(k, a) == best), key=lambda a: (adequate[a], a))
        current = current.map(lambda k: target.get(k, k))
    merges = {
        orig: final
        for orig, final in sorted(set(zip(keys.tolist(), current.tolist())))
        if orig != final
    }
    return current, merges


def _stratum_rng(seed: int, key: str) -> np.random.Generator:
    digest = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")
    return np.random.default_rng(np.random.SeedSequence([int(seed), digest]))


def _test_counts(sizes: dict[str, int], fraction: float) -> dict[str, int]:
    """Largest-remainder allocation: per-stratum test counts summing to round(N * fraction)."""
    total = sum(sizes.values())
    target = int(math.floor(total * fraction + 0.5))
    exact = {k: n * fraction for k, n in sizes.items()}
    counts = {k: int(math.floor(v)) for k, v in exact.items()}
    rest = target - sum(counts.values())
    order = sorted(sizes, key=lambda k: (-(exact[k] - counts[k]), k))
    for k in order[: max(0, rest)]:
        counts[k] += 1
    # never put a whole stratum into test
    for k, n in sizes.items():
        if n > 1 and counts[k] >= n:
            counts[k] = n - 1
    return counts


def make_split(table: pd.DataFrame, settings: SplitSettings | None = None) -> SplitResult:
    """Stratified train/test split with K folds over the training cases."""
    settings = settings or SplitSettings()
    ids = table["patient_id"].astype(str) if "patient_id" in table.columns else None
    if ids is None:
        raise ValidationFailed("table has no patient_id column", "table")
    dup = ids[ids.duplicated()]
    if len(dup):
        raise ValidationFailed(f"patient_id appears more than once: {dup.iloc[0]}", "patient_id")
    if ids.empty:
        raise ValidationFailed("table has no rows to split", "table")
    keys = stratum_keys(table)
    keys.index = ids.values
    final, merges = merge_small_strata(keys, settings.effective_min_stratum)

    members: dict[str, list[str]] = {}
    for pid, key in sorted(zip(final.index, final.tolist())):
        members.setdefault(key, []).append(pid)
    tests = _test_counts({k: len(v) for k, v in members.items()}, settings.test_fraction)

    original = dict(zip(keys.index, keys.tolist()))
    rows: list[tuple[Any, str, Any, str, Any]] = []
    fold_offset = 0
    for key in sorted(members):
        pids = members[key]
        order = _stratum_rng(settings.seed, key).permutation(len(pids))
        shuffled = [pids[i] for i in order]
        n_test = tests[key]
        for pid in shuffled[:n_test]:
            rows.append((pid, "test", pd.NA, key, original[pid]))
        for i, pid in enumerate(shuffled[n_test:]):
            rows.append((pid, "train", (fold_offset + i) % settings.folds, key, original[pid]))
        fold_offset = (fold_offset + len(shuffled) - n_test) % settings.folds
    out = pd.DataFrame(rows, columns=["patient_id", "split", "fold", "stratum", "original_stratum"])
    n_train = int((out["split"] == "train").sum())
    if n_train < settings.folds:
        raise ValidationFailed(
            f"{settings.folds} cross-validation folds need at least {settings.folds} training cases, but the split "
            f"leaves {n_train} of {len(out)} case(s) for training; use fewer folds (--folds)", "split.folds")
    out["fold"] = out["fold"].astype("Int64")
    out = out.sort_values("patient_id", kind="mergesort").reset_index(drop=True)
    return SplitResult(out, merges, settings)


def write_split(result: SplitResult, csv_path: StrPath) -> tuple[Path, Path]:
    """Write ``patient_id,split,fold`` CSV and nnU-Net ``splits_final.json`` next to it."""
    from etl.atomic import write_text

    csv_path = Path(csv_path)
    write_text(csv_path, split_csv_text(result))
    json_path = csv_path.with_name(NNUNET_SPLITS)
    write_text(json_path, json.dumps(result.nnunet_splits(), indent=2) + "\n")
    return csv_path, json_path


def split_csv_text(result: SplitResult) -> str:
    lines = ["patient_id,split,fold"]
    for pid, split, fold in result.frame().itertuples(index=False):
        lines.append(f"{pid},{split},{'' if fold is pd.NA else int(fold)}")
    return "\n".join(lines) + "\n"


def read_split(csv_path: StrPath) -> pd.DataFrame:
    """Read a ``train_test_splits.csv`` back (fold as nullable integer)."""
    from etl.errors import InputUnreadable

    try:
        df = pd.read_csv(csv_path, dtype={"patient_id": str, "split": str}, keep_default_na=True)
    except (OSError, ValueError) as exc:
        raise InputUnreadable(f"cannot read split file: {exc}", str(csv_path)) from exc
    missing = [c for c in ("patient_id", "split", "fold") if c not in df.columns]
    if missing:
        raise InputUnreadable(f"split file lacks column(s) {', '.join(missing)}", str(csv_path))
    folds = pd.to_numeric(df["fold"], errors="coerce")
    bad = (folds.isna() & df["fold"].notna()) | (folds.notna() & (folds % 1 != 0))
    if bad.any():
        i = int(bad.to_numpy().nonzero()[0][0])
        raise InputUnreadable(f"fold must be an integer or empty, got {df['fold'].iloc[i]!r}",
                              f"{csv_path}: row {i + 1} ({df['patient_id'].iloc[i]}), column fold")
    df["fold"] = folds.astype("Int64")
    return df


def fixed_split(table: pd.DataFrame, csv_path: StrPath, settings: SplitSettings | None = None) -> SplitResult:
    """A published split (e.g. the challenge's) applied to ``table``: every case must be assigned, and every
    training case must have a fold in 0..K-1, so the release reproduces it exactly instead of re-drawing."""
    settings = settings or SplitSettings()
    sp = read_split(csv_path)
    sp["patient_id"] = sp["patient_id"].astype(str).str.strip()
    ids = table["patient_id"].astype(str)
    missing = sorted(set(ids) - set(sp["patient_id"]))
    if missing:
        raise ValidationFailed(f"{len(missing)} case(s) have no assignment in the split file (first: {missing[0]})", str(csv_path))
    sp = sp[sp["patient_id"].isin(set(ids))]
    bad = sp[~sp["split"].isin(["train", "test"])]
    if len(bad):
        raise ValidationFailed(f"split must be train or test, got {bad['split'].iloc[0]!r}", f"{csv_path} ({bad['patient_id'].iloc[0]})")
    train = sp[sp["split"] == "train"]
    no_fold = train[train["fold"].isna() | ~train["fold"].isin(list(range(settings.folds)))]
    if len(no_fold):
        raise ValidationFailed(f"training case without a fold in 0..{settings.folds - 1}", f"{csv_path} ({no_fold['patient_id'].iloc[0]})")
    keys = stratum_keys(table)
    keys.index = ids.values
    out = sp[["patient_id", "split", "fold"]].copy()
    out["fold"] = out["fold"].where(out["split"] == "train").astype("Int64")
    out["stratum"] = [keys[p] for p in out["patient_id"]]
    out["original_stratum"] = out["stratum"]
    out = out.sort_values("patient_id", kind="mergesort").reset_index(drop=True)
    return SplitResult(out, {}, settings)


def balance_text(result: SplitResult) -> str:
    """Plain-text balance report: per stratum counts, marginals by dataset and pcr, merges."""
    a = result.assignments
    lines = []
    bal = result.balance()
    width = max([len("stratum")] + [len(s) for s in bal["stratum"]])
    lines.append(f"{'stratum':<{width}}  {'n':>5}  {'train':>5}  {'test':>5}  {'test%':>6}")
    r: Any
    for r in bal.itertuples(index=False):
        lines.append(f"{r.stratum:<{width}}  {r.n:>5}  {r.train:>5}  {r.test:>5}  {100 * r.test_share:>5.1f}%")
    total_test = int((a["split"] == "test").sum())
    lines.append(f"{'total':<{width}}  {len(a):>5}  {len(a) - total_test:>5}  {total_test:>5}  {100 * total_test / max(1, len(a)):>5.1f}%")
    lines.append("")
    parts = a["original_stratum"].str.split("|")
    marginals = a.assign(**{name: parts.str[i] for i, name in enumerate(STRATA_COLUMNS)})
    for col in STRATA_COLUMNS:
        lines.append(f"by {col}:")
        for value, grp in marginals.groupby(col, sort=True):
            t = int((grp["split"] == "test").sum())
            lines.append(
                f"  {value:<16} n={len(grp):>5}  train={len(grp) - t:>5}  test={t:>5}  ({100 * t / len(grp):.1f}% test)"
            )
    folds = a.loc[a["split"] == "train", "fold"].value_counts().sort_index()
    lines.append("folds (training cases): " + ", ".join(f"{int(cast(Any, k))}: {int(v)}" for k, v in folds.items()))
    if result.merges:
        lines.append("")
        lines.append(f"merged {len(result.merges)} small strata (< {result.settings.effective_min_stratum} cases):")
        for orig_key, final_key in result.merges.items():
            lines.append(f"  {orig_key} -> {final_key}")
    return "\n".join(lines)
