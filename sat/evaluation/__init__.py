"""Evaluation: Dice / NSD on the original grid, ``evaluate()``, tables, specialist baseline, comparison.

Example:
    >>> import sat.evaluation as ev
    >>> df = ev.evaluate("preds/", "labels/", labels="datasets/my_ct.yaml")   # doctest: +SKIP
    >>> tables = ev.summary_tables(df)                                          # doctest: +SKIP

Submodules are imported on first use (MONAI and torch are heavy).
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "evaluate": "sat.evaluation.evaluator",
    "binary_metrics": "sat.evaluation.metrics",
    "dice": "sat.evaluation.metrics",
    "surface_dice": "sat.evaluation.metrics",
    "hd95": "sat.evaluation.metrics",
    "aggregate": "sat.evaluation.report",
    "summary_tables": "sat.evaluation.report",
    "write_tables": "sat.evaluation.report",
    "compare": "sat.evaluation.compare",
    "compare_people": "sat.evaluation.compare",
    "per_person": "sat.evaluation.report",
    "over_people": "sat.evaluation.report",
    "plot_compare": "sat.evaluation.compare",
    "read_mapping": "sat.evaluation.labels",
    "plan_specialist": "sat.evaluation.specialist",
    "load_specialist": "sat.evaluation.specialist",
    "train_specialist": "sat.evaluation.specialist_train",
    "predict_specialist": "sat.evaluation.specialist_train",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'sat.evaluation' has no attribute {name!r}")
