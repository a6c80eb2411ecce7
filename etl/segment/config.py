"""Segmentation settings, read from the ``segmentation`` section of a release definition.

Every number the stage uses (input channel, normalisation, FTV thresholds) is data in the release
definition, so a rebuilt release records exactly how its masks were made.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from etl.yamlfile import load_yaml_mapping
from etl.errors import ConfigError
from etl.resources import data_path
from etl.types import StrPath

NORMALIZATIONS = ("none", "zscore_all_phases", "zscore")
METHODS = ("nnunet", "ftv")
DEVICES = ("auto", "cuda", "cpu")


@dataclass(frozen=True)
class FtvSettings:
    """I-SPY1 functional tumour volume thresholds (see etl/segment/ftv.py for the method)."""

    early_phase: int = 1
    late_phase: int = -1
    pe_min_percent: float = 70.0
    ser_min: float | None = None
    ser_max: float | None = None
    background_fraction: float = 0.15
    background_percentile: float = 99.0
    min_component_mm3: float = 0.0
    keep: str = "largest"
    lesion_box_key: str = "lesion_box"
    box_margin_mm: float = 0.0


@dataclass(frozen=True)
class SegmentationConfig:
    method: str = "nnunet"
    model: str | None = None
    folds: tuple[int, ...] | None = None
    input_phase: int = 1
    device: str = "auto"
    normalization: str = "zscore_all_phases"
    channel_name: str = "DCE_first_post_contrast"
    ftv: FtvSettings = field(default_factory=FtvSettings)
    source: str = "<defaults>"


def _opt_float(value: Any, key: str, where: str) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"segmentation.{key} must be a number or null, got {value!r}", where) from exc


def load_config(definition: StrPath | None = None) -> SegmentationConfig:
    """Settings from ``definition`` (default: the shipped release/v1.yaml)."""
    path = Path(definition) if definition else data_path("release/v1.yaml")
    where = str(path)
    doc = load_yaml_mapping(path, "release definition")
    sec = doc.get("segmentation") or {}
    if not isinstance(sec, dict):
        raise ConfigError("segmentation section must be a mapping", where)

    method = str(sec.get("method", "nnunet"))
    if method not in METHODS:
        raise ConfigError(f"segmentation.method must be one of {METHODS}, got {method!r}", where)
    device = str(sec.get("device", "auto"))
    if device not in DEVICES:
        raise ConfigError(f"segmentation.device must be one of {DEVICES}, got {device!r}", where)
    folds_raw = sec.get("folds")
    try:
        folds = None if folds_raw is None else tuple(int(f) for f in folds_raw)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"segmentation.folds must be a list of integers or null, got {folds_raw!r}", where) from exc
    prep = sec.get("preprocessing") or {}
    normalization = str(prep.get("normalization", "zscore_all_phases"))
    if normalization not in NORMALIZATIONS:
        raise ConfigError(f"segmentation.preprocessing.normalization must be one of {NORMALIZATIONS}", where)
    try:
        input_phase = int(sec.get("input_phase", 1))
    except (TypeError, ValueError) as exc:
        raise ConfigError("segmentation.input_phase must be an integer", where) from exc

    f = sec.get("ftv") or {}
    if not isinstance(f, dict):
        raise ConfigError("segmentation.ftv must be a mapping", where)
    keep = str(f.get("keep", "largest"))
    if keep not in ("largest", "all"):
        raise ConfigError("segmentation.ftv.keep must be 'largest' or 'all'", where)
    defaults = FtvSettings()
    try:
        ftv = FtvSettings(
            early_phase=int(f.get("early_phase", defaults.early_phase)),
            late_phase=int(f.get("late_phase", defaults.late_phase)),
            pe_min_percent=float(f.get("pe_min_percent", defaults.pe_min_percent)),
            ser_min=_opt_float(f.get("ser_min"), "ftv.ser_min", where),
            ser_max=_opt_float(f.get("ser_max"), "ftv.ser_max", where),
            background_fraction=float(f.get("background_fraction", defaults.background_fraction)),
            background_percentile=float(f.get("background_percentile", defaults.background_percentile)),
            min_component_mm3=float(f.get("min_component_mm3", defaults.min_component_mm3)),
            keep=keep,
            lesion_box_key=str(f.get("lesion_box_key", defaults.lesion_box_key)),
            box_margin_mm=float(f.get("box_margin_mm", defaults.box_margin_mm)),
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"segmentation.ftv has a non-numeric threshold: {exc}", where) from exc
    model = sec.get("model")
    return SegmentationConfig(
        method=method,
        model=None if model is None else str(model),
        folds=folds,
        input_phase=input_phase,
        device=device,
        normalization=normalization,
        channel_name=str(prep.get("channel_name", "DCE_first_post_contrast")),
        ftv=ftv,
        source=where,
    )
