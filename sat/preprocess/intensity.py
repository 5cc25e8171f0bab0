"""Intensity standardisation: fixed CT windows and scales, percentile z-scores for MR and PET.

Example:
    >>> import torch
    >>> out, stats = normalize_intensity(torch.tensor([-1000.0, 0.0, 2000.0]), "ct")
    >>> stats["clip"]
    [-500.0, 1000.0]
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from sat.errors import InputError

__all__ = ["ABDOMEN_WINDOW", "CT_SCALE", "CT_WINDOW", "PERCENTILES", "ct_scale_of", "ct_window_of",
           "normalize_intensity", "normalize_official"]

CT_WINDOW = (-500.0, 1000.0)
# CT is in Hounsfield units, which mean the same on every scanner, so every CT gets one fixed
# map: (clip(HU, CT_WINDOW) - mean) / std. A per-scan z-score moves a tissue with the field
# of view and the enhancement (the body mean of an enhanced upper-abdomen slab lies 66 HU
# above that of an unenhanced chest-to-femur scan). The values are the body statistics
# (voxels above -500 HU) of the training CT, rounded.
CT_SCALE = (-25.0, 120.0)
# The abdominal window: the range some public sets are distributed in (BTCV: 8 bits, [-125, 275]
# HU). A model trained with it clips every CT to it, so full-range scans look like those sets.
ABDOMEN_WINDOW = (-125.0, 275.0)
PERCENTILES = (0.5, 99.5)
_MAX_STAT_VOXELS = 2_000_000



def _sample(values: np.ndarray) -> np.ndarray:
    step = max(1, values.size // _MAX_STAT_VOXELS)
    return values.reshape(-1)[::step]


def normalize_intensity(
    array: torch.Tensor, modality: str | None, *, ct_scale: tuple[float, float] | None = CT_SCALE,
    ct_window: tuple[float, float] = CT_WINDOW,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Clip and scale ``array`` (not in place); returns (normalised float32, stats).

    CT: clip to ``ct_window`` (default [-500, 1000] HU), then subtract ``ct_scale[0]`` and divide by ``ct_scale[1]``
    (fixed, :data:`CT_SCALE`); ``ct_scale=None`` instead z-scores over the scan's own body
    voxels (above -500 HU; all voxels if none), as models trained before the fixed scale
    expect. MR, PET or unknown: clip to the 0.5-99.5 percentiles of the non-zero voxels
    (background is usually exactly 0), mean/std over those clipped non-zero voxels.
    Statistics use at most ~2M evenly strided voxels.
    """
    flat = array.reshape(-1).numpy()
    if modality == "ct" and ct_scale is not None:
        (lo, hi), (mean, std) = ct_window, (float(ct_scale[0]), float(ct_scale[1]))
        if not std > 0:
            raise InputError(f"ct_scale {tuple(ct_scale)} needs a positive scale; give (center HU, scale HU)")
    else:
        if modality == "ct":
            lo, hi = ct_window
            body = _sample(flat)
            body = body[body > lo]
        else:
            body = _sample(flat)
            body = body[body != 0] if np.count_nonzero(body) else body
            lo, hi = (float(v) for v in np.percentile(body, PERCENTILES)) if body.size else (0.0, 0.0)
        stats_from = np.clip(body, lo, hi) if body.size else np.clip(_sample(flat), lo, hi)
        mean = float(stats_from.mean(dtype=np.float64))
        std = max(float(stats_from.std(dtype=np.float64)), 1e-6)
    out = array.clamp(lo, hi).sub_(mean).div_(std)
    return out, {"clip": [float(lo), float(hi)], "mean": mean, "std": std}


def normalize_official(array: torch.Tensor, modality: str | None) -> tuple[torch.Tensor, dict[str, Any]]:
    """The original SAT's normalisation over every voxel (not in place): CT clipped to
    :data:`CT_WINDOW`, other modalities to their 0.5-99.5 percentiles; then z-scored (float64 statistics)."""
    flat = array.reshape(-1).double()
    if modality == "ct":
        lo, hi = CT_WINDOW
    else:
        lo, hi = (float(v) for v in np.percentile(flat.numpy(), PERCENTILES))
    clipped = flat.clamp_(lo, hi)
    mean, std = float(clipped.mean()), max(float(clipped.std(correction=0)), 1e-12)
    out = array.clamp(lo, hi).sub_(mean).div_(std)
    return out, {"clip": [float(lo), float(hi)], "mean": mean, "std": std, "rule": "official"}


def ct_scale_of(intensity: Any) -> tuple[float, float] | None:
    """The ``ct_scale`` a model or plan was trained with, from its ``intensity`` description.

    ``{"ct": {"mean": m, "std": s, ...}}`` -> ``(m, s)``; a CT entry that is text (models made
    before the fixed scale: per-scan z-score) -> ``None``; no description -> :data:`CT_SCALE`.
    """
    ct = intensity.get("ct") if isinstance(intensity, dict) else None
    if ct is None:
        return CT_SCALE
    if isinstance(ct, dict):
        return float(ct["mean"]), float(ct["std"])
    return None


def ct_window_of(intensity: Any) -> tuple[float, float]:
    """The CT clip range (HU) of a model's ``intensity`` description (``{"ct": {"clip": [lo, hi]}}``).

    Models that state none were trained with :data:`CT_WINDOW`.
    """
    ct = intensity.get("ct") if isinstance(intensity, dict) else None
    clip = ct.get("clip") if isinstance(ct, dict) else None
    if clip is None:
        return CT_WINDOW
    lo, hi = (float(v) for v in clip)
    if not lo < hi:
        raise InputError(f"the model's CT clip range {clip} is empty; fix 'intensity' in its config.json")
    return lo, hi
