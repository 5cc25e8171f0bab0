"""Simulated intravenous contrast for CT training samples.

Most public CT datasets are contrast-enhanced (arterial, portal-venous or delayed phase),
while a training scan may be native (unenhanced): then vessels and parenchymal organs are
40-200 HU brighter at test time than anything the model saw. :func:`simulate_contrast`
adds, per labelled structure, the enhancement of a randomly drawn phase: one HU offset per
tissue class, drawn from the class's range for that phase and scaled by one dose factor per
sample, smoothed slightly at structure borders (partial volume), converted to standardized
units with the case's own intensity scale.

The ranges are typical enhancement over the unenhanced value in adult abdominal CT, in HU
(round figures of the radiology literature, wide on purpose). Enhancement is never negative:
the simulation only adds contrast, so a native training scan also stays what it is in the
samples the simulation does not touch.

Tissue classes come from the knowledge tree (:func:`tissue_of`): arteries and veins by their
``is_a`` ancestors, the portal vein on its own, solid organs by id, hollow digestive organs
(mostly lumen content), skeletal muscle; bone, fat, lung, cord and everything else: none.

Example:
    >>> import numpy as np
    >>> from sat.data.contrast import simulate_contrast
    >>> label = np.zeros((8, 8, 8), np.uint16); label[2:6, 2:6, 2:6] = 1
    >>> out = simulate_contrast(np.zeros((8, 8, 8), np.float32), label, {1: "artery"}, 200.0,
    ...                         np.random.default_rng(0))
    >>> bool(out[4, 4, 4] > 0.3), float(out[0, 0, 0])
    (True, 0.0)
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = ["PHASES", "ENHANCEMENT_HU", "tissue_of", "simulate_contrast"]

# Phase -> probability of that phase among the simulated ones.
PHASES: dict[str, float] = {"arterial": 0.3, "portal_venous": 0.5, "delayed": 0.2}

# Phase -> tissue class -> (low, high) enhancement in HU over the unenhanced value.
ENHANCEMENT_HU: dict[str, dict[str, tuple[float, float]]] = {
    "arterial": {"artery": (180, 350), "vein": (0, 60), "portal_vein": (40, 120), "liver": (10, 35),
                 "spleen": (40, 100), "kidney": (80, 160), "pancreas": (60, 110), "gland": (20, 60),
                 "bowel": (0, 25), "muscle": (3, 12)},
    "portal_venous": {"artery": (100, 180), "vein": (60, 130), "portal_vein": (100, 170), "liver": (40, 75),
                      "spleen": (55, 95), "kidney": (110, 180), "pancreas": (50, 85), "gland": (20, 60),
                      "bowel": (0, 25), "muscle": (5, 15)},
    "delayed": {"artery": (50, 110), "vein": (50, 110), "portal_vein": (50, 110), "liver": (25, 55),
                "spleen": (25, 60), "kidney": (70, 150), "pancreas": (20, 50), "gland": (10, 40),
                "bowel": (0, 20), "muscle": (5, 15)},
}

_BY_ID = {"liver": "liver", "spleen": "spleen", "pancreas": "pancreas", "kidney_left": "kidney",
          "kidney_right": "kidney", "kidney": "kidney", "adrenal_gland_left": "gland",
          "adrenal_gland_right": "gland", "thyroid_gland": "gland", "stomach": "bowel", "duodenum": "bowel",
          "small_bowel": "bowel", "colon": "bowel", "esophagus": "bowel"}


def tissue_of(concept: str) -> str | None:
    """Tissue class of a knowledge-tree concept id (a key of the phase tables), or None (does not enhance)."""
    from sat import knowledge

    if concept in _BY_ID:
        return _BY_ID[concept]
    if "portal_vein" in concept:
        return "portal_vein"
    tree = knowledge.load()
    up = {a.id for a in tree.ancestors(concept)} if concept in tree else set()
    for cls in ("artery", "vein"):
        if cls in up:
            return cls
    return "muscle" if "skeletal_muscle" in up else None


def simulate_contrast(
    image: np.ndarray,
    label: np.ndarray,
    tissues: Mapping[int, str],
    hu_per_unit: float,
    rng: np.random.Generator,
    *,
    phase: str | None = None,
) -> np.ndarray:
    """[X, Y, Z] standardized CT patch -> the same patch as if contrast had been given (a copy).

    Args:
        image: [X, Y, Z] float32 standardized intensities.
        label: [X, Y, Z] integer label map of the patch.
        tissues: label value -> tissue class (values missing or mapped to None do not enhance).
        hu_per_unit: HU per standardized unit of this case (the scale of its intensity normalisation).
        rng: random generator (the phase, the dose factor and every class offset come from it).
        phase: force a phase of :data:`PHASES` (default: drawn with their probabilities).
    """
    from scipy.ndimage import gaussian_filter

    if phase is None:
        names = list(PHASES)
        phase = names[int(rng.choice(len(names), p=np.array([PHASES[n] for n in names])))]
    table = ENHANCEMENT_HU[phase]
    dose = rng.uniform(0.7, 1.3)
    offsets = {cls: rng.uniform(lo, hi) * dose for cls, (lo, hi) in table.items()}
    lut = np.zeros(int(label.max()) + 1, np.float32)
    for value, cls in tissues.items():
        if cls in offsets and 0 < value < lut.size:
            lut[value] = offsets[cls] / hu_per_unit
    if not lut.any():
        return image
    return image + gaussian_filter(lut[label], sigma=0.5, mode="nearest")
