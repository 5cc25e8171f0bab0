"""One standardized training/validation volume as the patch sampler reads it (:class:`Case`).

Example:
    >>> import numpy as np
    >>> from sat.data.case import Case
    >>> lab = np.zeros((8, 8, 8), np.uint16); lab[2:5, 2:5, 2:5] = 1
    >>> case = Case("toy", "c1", "ct", np.zeros((8, 8, 8), np.float32), lab, {"liver": (1,)}, ("liver", "spleen"))
    >>> case.present_in(lab), int(case.mask(lab, "liver").sum()), case.labelled
    (['liver'], 27, ('liver', 'spleen'))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from sat.errors import InputError

__all__ = ["Case"]

_MAX_FG_POINTS = 4000  # foreground voxels remembered per structure (for patch centres)


@dataclass
class Case:
    """One standardized training/validation volume.

    Attributes:
        dataset, case, modality: identification ("ct" | "mr" | "pet").
        image: [X, Y, Z] float32 (float16 accepted) standardized intensities.
        label: [X, Y, Z] integer label map.
        values: concept id -> label values that make it (usually one).
        labelled: every concept the case's dataset labels (the allowed negatives).
        tissues: label value -> tissue class of :mod:`sat.data.contrast` (every labelled
            structure, trained or not; used by the contrast simulation).
        intensity_std: intensity units (HU for CT) per standardized unit; None if unknown.
        intensity_mean: the intensity (HU for CT) that standardizes to 0; None if unknown.
        window: (low, high) standardized range the image is clipped to (None: not clipped); set by
            :meth:`clip_to`, and augmentations that change intensities clip to it again.
    """

    dataset: str
    case: str
    modality: str
    image: np.ndarray
    label: np.ndarray
    values: dict[str, tuple[int, ...]]
    labelled: tuple[str, ...]
    points: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    tissues: dict[int, str] = field(default_factory=dict, repr=False)
    intensity_std: float | None = None
    intensity_mean: float | None = None
    window: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if self.image.shape != self.label.shape or self.image.ndim != 3:
            raise InputError(
                f"case {self.dataset}/{self.case}: image {self.image.shape} and label {self.label.shape} "
                "must be the same 3D shape; re-run `sat data prepare`"
            )
        self.labelled = tuple(dict.fromkeys((*self.labelled, *self.values)))
        if not self.points:
            self.points = _foreground_points(self.label, self.values)
        self.background = float(self.image.min()) if self.image.size else 0.0

    def clip_to(self, low: float, high: float) -> None:
        """Clip the image to [low, high] in its own intensity units (HU for CT), as a windowed set is stored.

        Raises:
            InputError: the case has no intensity mapping (standardized units -> HU).
        """
        if self.intensity_std is None or self.intensity_mean is None:
            raise InputError(f"case {self.dataset}/{self.case} has no intensity mapping; re-run `sat data prepare`")
        self.window = ((low - self.intensity_mean) / self.intensity_std, (high - self.intensity_mean) / self.intensity_std)
        self.image = np.clip(self.image, *self.window).astype(self.image.dtype)
        self.background = float(self.image.min()) if self.image.size else 0.0

    def mask(self, label: np.ndarray, concept: str) -> np.ndarray:
        """Boolean mask of ``concept`` in a (cropped) label array."""
        vals = self.values.get(concept, ())
        if len(vals) == 1:
            return label == vals[0]
        return np.isin(label, vals) if vals else np.zeros(label.shape, bool)

    def present_in(self, label: np.ndarray) -> list[str]:
        """Concepts with at least one voxel in a (cropped) label array."""
        found = set(np.unique(label).tolist())
        return [c for c, vals in self.values.items() if c in self.points and found.intersection(vals)]


def _foreground_points(label: np.ndarray, values: Mapping[str, Sequence[int]]) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    out = {}
    for concept, vals in values.items():
        pts = np.argwhere(np.isin(label, vals))
        if len(pts) > _MAX_FG_POINTS:
            pts = pts[rng.choice(len(pts), _MAX_FG_POINTS, replace=False)]
        if len(pts):
            out[concept] = pts.astype(np.int32)
    return out
