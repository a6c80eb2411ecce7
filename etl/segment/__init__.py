"""Segmentation stage: nnU-Net preliminary masks (optional `segment` extra), FTV fallback, QC in millimetres.

``nnunet_available()`` tells callers (e.g. the demo) whether the nnU-Net path can run without importing
anything heavy; torch and nnunetv2 are only imported when a prediction is made.
"""

from __future__ import annotations

import importlib.util

INSTALL_HINT = (
    'nnU-Net is not installed: install the extra with `pip install "mamamia-etl[segment]"` '
    "(CPU build: torch==2.13.0 torchvision==0.28.0 nnunetv2 in one pip command), or run `mamamia segment --ftv`"
)


def nnunet_available() -> bool:
    """True when torch and nnunetv2 can be imported (the ``segment`` extra is installed)."""
    return all(importlib.util.find_spec(m) is not None for m in ("torch", "nnunetv2"))


__all__ = ["INSTALL_HINT", "nnunet_available"]
