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
    """True when torch and nnunetv2 can be found (the ``segment`` extra is installed); never raises.

    Only the import system is asked (nothing is imported); an import hook or a broken install that makes
    the lookup itself fail counts as "not available". A package that is found but fails to import is
    reported by the predictor as the same one-line install hint.
    """
    for name in ("torch", "nnunetv2"):
        try:
            if importlib.util.find_spec(name) is None:
                return False
        except (ImportError, ValueError):  # ValueError: a module in sys.modules with __spec__ None
            return False
    return True


__all__ = ["INSTALL_HINT", "nnunet_available"]
