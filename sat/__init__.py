"""SAT: segment 3D medical volumes from text prompts.

Example:
    >>> import sat
    >>> seg = sat.segment("ct.nii.gz", ["liver", "left kidney"])  # doctest: +SKIP
    >>> seg["left kidney"].shape == seg.labelmap.shape              # doctest: +SKIP
    True

Heavy modules (torch, MONAI) are imported lazily, so ``import sat.knowledge``
stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

from sat.errors import SATError

__version__ = "0.1.0"

_LAZY = {
    "segment": ("sat.api", "segment"),
    "load_model": ("sat.api", "load_model"),
    "Segmenter": ("sat.api", "Segmenter"),
    "Segmentation": ("sat.segmentation", "Segmentation"),
    "Volume": ("sat.io", "Volume"),
}
_SUBMODULES = {"api", "io", "preprocess", "knowledge", "text", "model", "data", "training", "evaluation"}

__all__ = ["SATError", "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    if name in _SUBMODULES:
        return importlib.import_module(f"sat.{name}")
    raise AttributeError(f"module 'sat' has no attribute {name!r}")
