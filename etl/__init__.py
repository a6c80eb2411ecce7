"""mamamia-etl: rebuild, validate and serve a harmonized breast DCE-MRI release (MAMA-MIA style).

Heavy modules are imported lazily so that ``import etl`` and ``mamamia --help`` stay fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:  # pragma: no cover
    from etl.use.release import Release, open_release

__all__ = ["__version__", "open_release", "Release"]


def __getattr__(name: str) -> Any:
    if name in ("open_release", "Release"):
        from etl.use import release

        return getattr(release, name)
    raise AttributeError(f"module 'etl' has no attribute {name!r}")
