"""Evaluate label-map predictions of any tool against reference label maps, per case and class.

Example:
    >>> import sat.evaluation as ev
    >>> df = ev.evaluate("preds/", "labelsTs/", labels={"1": "liver", "2": "spleen"})  # doctest: +SKIP
    >>> df.groupby("concept")["dice"].mean()                                              # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from sat.errors import InputError
from sat.evaluation.labels import (
    ClassInfo,
    LabelImage,
    align_to,
    find_cases,
    read_case,
    read_mapping,
    resolve_classes,
)
from sat.evaluation.metrics import binary_metrics, spacing_from_affine

log = logging.getLogger(__name__)

COLUMNS = [
    "method", "dataset", "case", "concept", "name", "region", "kind", "status", "tolerance_mm",
    "dice", "nsd", "hd95", "pred_voxels", "gt_voxels", "pred_ml", "gt_ml",
]
PathLike = str | Path
Sources = PathLike | Mapping[str, PathLike]

__all__ = ["COLUMNS", "evaluate", "evaluate_case"]


def _tolerance(info: ClassInfo, default: float, per_class: Mapping[str, float]) -> float:
    for key in (info.concept, info.name):
        if key in per_class:
            return float(per_class[key])
    return float(default)


def evaluate_case(
    pred: LabelImage | None,
    gt: LabelImage,
    classes: Mapping[str, ClassInfo],
    *,
    tolerance_mm: float = 1.0,
    class_tolerance_mm: Mapping[str, float] | None = None,
    hd95: bool = False,
    skip_absent: bool = True,
) -> list[dict]:
    """Metrics of every class for one case, on the reference grid (``pred`` None = missing, counted empty).

    With ``skip_absent`` a class empty in both reference and prediction gives no row (it would
    score 1 by convention and inflate the means); otherwise it is kept with Dice = NSD = 1.
    Returns one dict per class with the keys of :data:`COLUMNS` except method/dataset/case.
    """
    spacing = spacing_from_affine(gt.affine)
    if pred is not None:
        pred = align_to(pred, gt.array.shape, gt.affine)
    empty = np.zeros(gt.array.shape, bool)
    rows = []
    for cid, info in classes.items():
        gt_mask = gt.mask(cid)
        pred_mask = pred.mask(cid) if pred is not None else None
        if skip_absent and not gt_mask.any() and (pred_mask is None or not pred_mask.any()):
            continue
        status = "missing" if pred is None else ("ok" if pred_mask is not None else "not_predicted")
        tol = _tolerance(info, tolerance_mm, class_tolerance_mm or {})
        metrics = binary_metrics(
            empty if pred_mask is None else pred_mask, gt_mask, spacing, tolerance_mm=tol, with_hd95=hd95
        )
        rows.append({"concept": cid, "name": info.name, "region": info.region, "kind": info.kind,
                     "status": status, "tolerance_mm": tol, **metrics})
    return rows


def _select(resolved: dict, classes: Sequence[str] | None) -> dict[str, ClassInfo]:
    infos = {cid: info for cid, (info, _) in resolved.items()}
    if classes is None:
        return infos
    from sat.evaluation.labels import _tree

    wanted = {_tree().resolve(c).id for c in classes}
    unknown = wanted - set(infos)
    if unknown:
        raise InputError(f"classes {sorted(unknown)} are not labelled in the reference; drop them from --classes")
    return {cid: info for cid, info in infos.items() if cid in wanted}


def evaluate(
    pred: Sources,
    gt: Sources,
    *,
    labels: Mapping | PathLike,
    pred_labels: Mapping | PathLike | None = None,
    classes: Sequence[str] | None = None,
    tolerance_mm: float = 1.0,
    class_tolerance_mm: Mapping[str, float] | None = None,
    hd95: bool = False,
    skip_absent: bool = True,
    method: str = "prediction",
    dataset: str = "dataset",
) -> pd.DataFrame:
    """Dice / NSD (/ HD95) of every reference case and class; one row per (case, class).

    Args:
        pred: folder of predictions (``<case>.nii.gz`` files or ``<case>/`` folders written by
            ``sat segment`` or per-class masks), a single file, or ``{case: path}``.
        gt: reference label maps, same forms; every reference case is evaluated.
        labels: reference ``value -> name`` mapping (dict, JSON file, ``FILE.json:KEY`` or dataset card).
        pred_labels: prediction mapping when it differs from ``labels`` (a ``labels.json`` inside a
            prediction folder takes precedence).
        classes: evaluate only these names/concepts (default: every class of ``labels``).
        tolerance_mm: NSD tolerance; ``class_tolerance_mm`` overrides it per concept id or label name.
        hd95: also compute HD95 (mm).
        skip_absent: leave out (case, class) pairs empty in both reference and prediction (default);
            False keeps them with Dice = NSD = 1 (the empty-mask convention).
        method, dataset: written into the ``method`` and ``dataset`` columns.

    Returns:
        DataFrame with :data:`COLUMNS`. A reference case without prediction gets status "missing"
        and is scored as an empty prediction; a class absent from the prediction's mapping gets
        "not_predicted" (also scored empty). ``df.attrs["missing_cases"]`` lists missing cases,
        ``df.attrs["extra_cases"]`` predictions without a reference.
    """
    gt_mapping = read_mapping(labels)
    pred_mapping = read_mapping(pred_labels) if pred_labels is not None else gt_mapping
    wanted = _select(resolve_classes(gt_mapping), classes)
    gt_cases, pred_cases = find_cases(gt), find_cases(pred)
    if not gt_cases:
        raise InputError(f"no reference label maps found in {gt}; expected <case>.nii.gz files")
    missing = sorted(set(gt_cases) - set(pred_cases))
    extra = sorted(set(pred_cases) - set(gt_cases))
    if missing:
        log.warning("%d reference case(s) have no prediction, scored as empty: %s", len(missing), ", ".join(missing))
    if extra:
        log.warning("%d prediction(s) without reference ignored: %s", len(extra), ", ".join(extra))
    rows = []
    for case, gt_path in gt_cases.items():
        gt_img = read_case(gt_path, gt_mapping)
        pred_img = read_case(pred_cases[case], pred_mapping) if case in pred_cases else None
        for row in evaluate_case(pred_img, gt_img, wanted, tolerance_mm=tolerance_mm,
                                 class_tolerance_mm=class_tolerance_mm, hd95=hd95, skip_absent=skip_absent):
            rows.append({"method": method, "dataset": dataset, "case": case, **row})
        log.info("evaluated %s/%s (%d classes)", dataset, case, len(wanted))
    df = pd.DataFrame(rows, columns=COLUMNS)
    df.attrs["missing_cases"] = missing
    df.attrs["extra_cases"] = extra
    return df
