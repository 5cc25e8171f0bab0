"""Simulated content of the stomach and bowel for CT training samples.

What fills a hollow digestive organ changes from scan to scan and hour to hour: gas, water
or food (roughly 0-40 HU), or positive oral contrast (roughly 150-350 HU), and with both gas
and fluid present a gas-fluid level forms: the patient lies supine, so the gas collects on
the anterior side. A training subject shows one such state; :func:`simulate_lumen` draws
another for each hollow structure of a patch: the lumen (the structure minus a one-voxel
wall) is refilled with fluid of a random density and, above a level drawn as a random gas
fraction, with gas, plus texture noise and a slightly smoothed border.

Hollow structures are those of tissue class ``"bowel"`` (:func:`sat.data.contrast.tissue_of`:
stomach, duodenum, small bowel, colon, oesophagus). The ranges are round figures of the
radiology literature, wide on purpose.

Example:
    >>> import numpy as np
    >>> from sat.data.lumen import simulate_lumen
    >>> label = np.zeros((12, 12, 12), np.uint16); label[1:9, 1:9, 1:9] = 1
    >>> out = simulate_lumen(np.zeros((12, 12, 12), np.float32), label, {1: "bowel"}, 120.0, -25.0,
    ...                      np.random.default_rng(0), gas_fraction=0.5, content="fluid")
    >>> bool(out[5, 7, 5] < -3.0), bool(abs(out[5, 2, 5]) < 1.0), float(out[11, 11, 11])
    (True, True, 0.0)
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from sat.preprocess import CT_WINDOW

__all__ = ["CONTENT_HU", "GAS_HU", "simulate_lumen"]

# Content -> (probability, (low, high) HU) of what fills the non-gas part of a lumen.
CONTENT_HU: dict[str, tuple[float, tuple[float, float]]] = {
    "fluid": (0.7, (0.0, 40.0)),           # water, food, bile-stained fluid
    "oral_contrast": (0.3, (150.0, 350.0)),  # positive (iodine or barium) oral contrast
}
GAS_HU = -1000.0
MAX_GAS_FRACTION = 0.7
NOISE_HU = 10.0


def simulate_lumen(
    image: np.ndarray,
    label: np.ndarray,
    tissues: Mapping[int, str],
    hu_per_unit: float,
    hu_at_zero: float,
    rng: np.random.Generator,
    *,
    p_structure: float = 1.0,
    gas_fraction: float | None = None,
    content: str | None = None,
    anterior_axis: int = 1,
) -> np.ndarray:
    """[X, Y, Z] standardized CT patch -> the same patch with redrawn hollow-organ content (a copy).

    Args:
        image: [X, Y, Z] float32 standardized intensities (model space, RAS: axis 1 points anterior).
        label: [X, Y, Z] integer label map of the patch.
        tissues: label value -> tissue class; only ``"bowel"`` structures are refilled.
        hu_per_unit: HU per standardized unit of this case.
        hu_at_zero: the HU that standardizes to 0 for this case.
        rng: random generator (which structures, gas fraction, content, density and noise).
        p_structure: probability that each hollow structure of the patch is refilled.
        gas_fraction: force the gas share of every lumen (default: uniform in [0, 0.7]).
        content: force the fluid kind, a key of :data:`CONTENT_HU` (default: drawn).
        anterior_axis: array axis pointing anterior (gas rises towards its high end).
    """
    from scipy.ndimage import binary_erosion, gaussian_filter

    hollow = [v for v, cls in tissues.items() if cls == "bowel"]
    if not hollow:
        return image
    kinds = list(CONTENT_HU)
    weights = np.array([CONTENT_HU[k][0] for k in kinds])
    target = np.zeros(label.shape, np.float32)
    fill = np.zeros(label.shape, np.float32)
    for value in hollow:
        if rng.random() >= p_structure:
            continue
        lumen = binary_erosion(label == value, iterations=1)
        if lumen.sum() < 8:
            continue
        kind = content or kinds[int(rng.choice(len(kinds), p=weights / weights.sum()))]
        lo, hi = CONTENT_HU[kind][1]
        where = np.nonzero(lumen)
        hu = np.full(len(where[0]), rng.uniform(lo, hi))
        share = rng.uniform(0.0, MAX_GAS_FRACTION) if gas_fraction is None else float(gas_fraction)
        if share > 0:  # gas above the level: the anterior share of the lumen
            height = where[anterior_axis]
            hu[height >= np.quantile(height, 1.0 - share)] = GAS_HU
        hu += rng.normal(0.0, NOISE_HU, hu.shape)
        target[where] = (np.clip(hu, *CT_WINDOW) - hu_at_zero) / hu_per_unit
        fill[where] = 1.0
    if not fill.any():
        return image
    weight = np.clip(gaussian_filter(fill, sigma=0.5, mode="nearest"), 0.0, 1.0)
    target = gaussian_filter(target, sigma=0.5, mode="nearest") / np.maximum(weight, 1e-6)
    return (image * (1.0 - weight) + target * weight).astype(np.float32)
