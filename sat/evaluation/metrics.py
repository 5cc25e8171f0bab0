"""Overlap and surface metrics on the original voxel grid, in millimetres.

All functions take two boolean masks of the same shape plus the voxel spacing
(mm, one float per axis, taken from the reference's affine) and return plain
floats. The computations are MONAI's (``compute_dice``,
``compute_surface_dice``, ``compute_hausdorff_distance``); this module only fixes
the conventions for empty masks, which MONAI leaves as NaN:

==================  ======  ======  ==========================================
case                Dice    NSD     HD95
==================  ======  ======  ==========================================
both empty          1.0     1.0     0.0
only one empty      0.0     0.0     diagonal of the image extent in mm (worst)
both non-empty      MONAI   MONAI   MONAI (95th percentile, symmetric)
==================  ======  ======  ==========================================

"Both empty" is a correct answer (the structure is absent and nothing was
predicted), so it scores as perfect; a false positive on a case without the
structure, or a miss, scores 0. NSD (normalised surface Dice) is the fraction of
the two boundaries lying within ``tolerance_mm`` of the other boundary;
boundaries are the mask voxels removed by one binary erosion (6-connectivity,
voxels on the image border count as boundary), distances are Euclidean in mm.

Example:
    >>> import numpy as np
    >>> a = np.zeros((8, 8, 8), bool); a[2:6, 2:6, 2:6] = True
    >>> round(dice(a, a), 3), round(surface_dice(a, a, (1.0, 1.0, 2.0)), 3)
    (1.0, 1.0)
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from monai.metrics import compute_dice, compute_hausdorff_distance, compute_surface_dice

from sat.errors import InputError

Spacing = Sequence[float]

__all__ = ["binary_metrics", "dice", "hd95", "spacing_from_affine", "surface_dice"]


def spacing_from_affine(affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel size in mm along each array axis: the column norms of the 3x3 part of a (4, 4) affine."""
    affine = np.asarray(affine, dtype=np.float64)
    return tuple(float(v) for v in np.linalg.norm(affine[:3, :3], axis=0))  # type: ignore[return-value]


def _check(pred: np.ndarray, gt: np.ndarray, spacing: Spacing | None = None) -> tuple[np.ndarray, np.ndarray]:
    pred, gt = np.asarray(pred).astype(bool, copy=False), np.asarray(gt).astype(bool, copy=False)
    if pred.shape != gt.shape:
        raise InputError(f"prediction shape {pred.shape} differs from reference shape {gt.shape}; resample first")
    if spacing is not None and (len(spacing) != gt.ndim or min(spacing) <= 0):
        raise InputError(f"spacing {tuple(spacing)} must have one positive value per axis ({gt.ndim})")
    return pred, gt


def _tensor(mask: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(mask))[None, None]


def _crop_to_union(pred: np.ndarray, gt: np.ndarray, margin: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Crop both masks to the bounding box of their union (+margin, clipped): metrics do not change."""
    idx = np.nonzero(pred | gt)
    box = tuple(slice(max(int(i.min()) - margin, 0), int(i.max()) + margin + 1) for i in idx)
    return pred[box], gt[box]


def dice(pred: np.ndarray, gt: np.ndarray) -> float:
    """Dice overlap of two boolean masks [X, Y, Z] (1.0 when both are empty, 0.0 when one is).

    Example:
        >>> import numpy as np
        >>> dice(np.ones((2, 2, 2), bool), np.zeros((2, 2, 2), bool))
        0.0
    """
    pred, gt = _check(pred, gt)
    if not pred.any() and not gt.any():
        return 1.0
    if not pred.any() or not gt.any():
        return 0.0
    pred, gt = _crop_to_union(pred, gt)
    value = compute_dice(_tensor(pred).float(), _tensor(gt).float(), include_background=True, ignore_empty=False)
    return float(value.item())


def surface_dice(pred: np.ndarray, gt: np.ndarray, spacing: Spacing, *, tolerance_mm: float = 1.0) -> float:
    """Normalised surface Dice at ``tolerance_mm`` for boolean masks [X, Y, Z] with voxel ``spacing`` (mm).

    Example:
        >>> import numpy as np
        >>> a = np.zeros((9, 9, 9), bool); a[2:7, 2:7, 2:7] = True
        >>> b = np.roll(a, 1, axis=2)  # shifted by one voxel = 2 mm along z
        >>> surface_dice(a, b, (1, 1, 2), tolerance_mm=2.0) == 1.0
        True
    """
    pred, gt = _check(pred, gt, spacing)
    if not math.isfinite(tolerance_mm) or tolerance_mm < 0:
        raise InputError(f"NSD tolerance must be a finite number of mm >= 0, got {tolerance_mm}")
    if not pred.any() and not gt.any():
        return 1.0
    if not pred.any() or not gt.any():
        return 0.0
    pred, gt = _crop_to_union(pred, gt)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MONAI's own deprecation notices about internal arguments
        value = compute_surface_dice(
            _tensor(pred), _tensor(gt), [float(tolerance_mm)], include_background=True,
            spacing=[float(s) for s in spacing],
        )
    return float(value.item())


def hd95(pred: np.ndarray, gt: np.ndarray, spacing: Spacing) -> float:
    """Symmetric 95th-percentile Hausdorff distance in mm (0 if both empty, image diagonal if one is)."""
    pred, gt = _check(pred, gt, spacing)
    if not pred.any() and not gt.any():
        return 0.0
    if not pred.any() or not gt.any():
        return float(np.linalg.norm(np.asarray(gt.shape) * np.asarray(spacing, dtype=np.float64)))
    pred, gt = _crop_to_union(pred, gt)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = compute_hausdorff_distance(
            _tensor(pred), _tensor(gt), include_background=True, percentile=95,
            spacing=[float(s) for s in spacing],
        )
    return float(value.item())


def binary_metrics(
    pred: np.ndarray, gt: np.ndarray, spacing: Spacing, *, tolerance_mm: float = 1.0, with_hd95: bool = False
) -> dict[str, float]:
    """All metrics of one class: ``dice``, ``nsd``, ``hd95`` (NaN unless ``with_hd95``), voxel counts and ml.

    Args:
        pred, gt: boolean masks [X, Y, Z] on the same (reference) grid.
        spacing: voxel size in mm per axis (see :func:`spacing_from_affine`).
        tolerance_mm: NSD tolerance in mm.
        with_hd95: also compute HD95 (slower).

    Example:
        >>> import numpy as np
        >>> m = binary_metrics(np.zeros((4, 4, 4), bool), np.zeros((4, 4, 4), bool), (1, 1, 1))
        >>> m["dice"], m["nsd"]
        (1.0, 1.0)
    """
    pred, gt = _check(pred, gt, spacing)
    voxel_ml = float(np.prod(np.asarray(spacing, dtype=np.float64))) / 1000.0
    n_pred, n_gt = int(pred.sum()), int(gt.sum())
    return {
        "dice": dice(pred, gt),
        "nsd": surface_dice(pred, gt, spacing, tolerance_mm=tolerance_mm),
        "hd95": hd95(pred, gt, spacing) if with_hd95 else float("nan"),
        "pred_voxels": n_pred,
        "gt_voxels": n_gt,
        "pred_ml": n_pred * voxel_ml,
        "gt_ml": n_gt * voxel_ml,
    }
