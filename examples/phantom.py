"""A seeded procedural CT phantom of the trunk, with its own label map.

The phantom is built from simple shapes placed in physical (RAS+, mm)
coordinates, so left and right are where a radiologist expects them: the liver,
the inferior vena cava and the right kidney on the patient's right (+x), the
spleen and the aorta on the left (-x); the spine is posterior (-y). Intensities
are Hounsfield units of a portal-venous CT (air -1000, lung -850, fat -100,
muscle 50, liver 100, spleen 110, kidney 160, aorta 180, bone 250-700) with a
smooth fat/bowel texture and Gaussian noise. It is a test and demo object, not
anatomy to learn from; it lives beside the demo (not in the ``sat`` package) and the tests
and benchmarks put ``examples/`` on their path.

Example:
    >>> from phantom import make_phantom
    >>> ph = make_phantom(spacing=(6.0, 6.0, 6.0), seed=0)
    >>> ph.image.shape == ph.label.shape, ph.image.modality
    (True, 'ct')
    >>> bool(ph.mask("liver").any())
    True
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from sat.io import Volume

__all__ = ["FIELD_OF_VIEW", "Phantom", "make_phantom"]

FIELD_OF_VIEW = (360.0, 300.0, 330.0)  # mm, left-right x anterior-posterior x inferior-superior
_VERTEBRA_PITCH = 30.0  # mm from one vertebral body to the next (24 mm body + 6 mm disc)
_LEVELS = [f"t{i}" for i in range(1, 13)] + [f"l{i}" for i in range(1, 6)]  # top to bottom
_L5_CENTRE = -150.0  # z of the L5 body centre


@dataclass(frozen=True)
class Phantom:
    """A CT phantom and its reference labels.

    Attributes:
        image: CT volume, float32 ``[X, Y, Z]`` in HU, RAS+ affine, ``modality="ct"``.
        label: uint8 label map on the same grid (0 = background).
        concepts: label value -> knowledge-tree concept id (e.g. ``3 -> "kidney_left"``).
    """

    image: Volume
    label: Volume
    concepts: dict[int, str]

    def mask(self, concept_ids: str | Iterable[str]) -> np.ndarray:
        """Bool ``[X, Y, Z]`` union of the labels of the given concept id(s) (empty if none match)."""
        wanted = {concept_ids} if isinstance(concept_ids, str) else set(concept_ids)
        values = [v for v, c in self.concepts.items() if c in wanted]
        return np.isin(self.label.array, values)

    def reference(self, concept_id: str | None) -> np.ndarray | None:
        """Bool ``[X, Y, Z]`` labels of a knowledge-tree concept and its descendants (so "kidneys" is the
        union of both kidneys); None when the phantom labels none of them."""
        if concept_id is None:
            return None
        from sat import knowledge

        tree = knowledge.load()
        wanted = {concept_id}
        if concept_id in tree:
            wanted |= {getattr(d, "id", d) for d in tree.descendants(tree[concept_id])}
        return self.mask(wanted) if wanted & set(self.concepts.values()) else None


class _Grid:
    """World coordinates of the voxel centres; shapes are evaluated only inside their bounding box."""

    def __init__(self, shape: tuple[int, int, int], spacing: tuple[float, float, float]) -> None:
        self.axes = [(np.arange(n, dtype=np.float32) - (n - 1) / 2) * s for n, s in zip(shape, spacing, strict=True)]
        self.x = self.axes[0][:, None, None]
        self.y = self.axes[1][None, :, None]
        self.z = self.axes[2][None, None, :]
        self.shape = shape

    def _box(self, lo, hi) -> tuple[slice, ...]:
        return tuple(slice(*np.searchsorted(a, [lo_, hi_], side="left")) for a, lo_, hi_ in zip(self.axes, lo, hi, strict=True))

    def _fill(self, box: tuple[slice, ...], test) -> np.ndarray:
        out = np.zeros(self.shape, dtype=bool)
        x, y, z = (a[s] for a, s in zip(self.axes, box, strict=True))
        out[box] = test(x[:, None, None], y[None, :, None], z[None, None, :])  # broadcast onto the box
        return out

    def ellipsoid(self, centre, radii) -> np.ndarray:
        (cx, cy, cz), (rx, ry, rz) = centre, radii
        box = self._box(np.subtract(centre, radii), np.add(centre, radii))
        return self._fill(box, lambda x, y, z: ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 + ((z - cz) / rz) ** 2 <= 1)

    def ellipse(self, centre, radii, z_range=(-np.inf, np.inf)) -> np.ndarray:
        """Elliptic cylinder along z between ``z_range`` (mm)."""
        (cx, cy), (rx, ry) = centre, radii
        box = self._box((cx - rx, cy - ry, z_range[0]), (cx + rx, cy + ry, z_range[1]))
        return self._fill(box, lambda x, y, z: ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 <= 1)


def _texture(rng: np.random.Generator, shape: tuple[int, ...], cell: int) -> np.ndarray:
    """Smooth random field in [0, 1] (coarse noise upsampled trilinearly)."""
    import torch

    coarse_shape = [max(2, -(-n // cell) + 1) for n in shape]
    coarse = torch.from_numpy(rng.random(coarse_shape, dtype=np.float32))[None, None]
    field = torch.nn.functional.interpolate(coarse, size=tuple(shape), mode="trilinear", align_corners=True)
    return field[0, 0].numpy()


def _diaphragm(g: _Grid) -> np.ndarray:
    """z (mm) of the diaphragm under each (x, y): two domes, the right one higher."""
    dome = 45.0 + 25.0 * (1.0 - ((np.abs(g.x) - 75.0) / 95.0) ** 2) + 10.0 * (g.x > 0)
    return dome + 0.0 * g.y  # [X, Y, 1]


def _organs(g: _Grid, above: np.ndarray, inside: np.ndarray) -> list[tuple[str, np.ndarray, float]]:
    """(concept id, mask, HU) in painting order (later ones win where shapes touch)."""
    below = ~above & inside
    liver = (g.ellipsoid((65, 15, 15), (85, 85, 70)) | g.ellipsoid((-10, 45, 30), (50, 40, 35))) & below
    spleen = g.ellipsoid((-95, -35, 30), (25, 45, 50)) & below
    hilum_l, hilum_r = g.ellipsoid((-28, -50, -40), (14, 14, 18)), g.ellipsoid((28, -50, -55), (14, 14, 18))
    kidney_left = g.ellipsoid((-55, -55, -40), (28, 25, 50)) & ~hilum_l & below
    kidney_right = g.ellipsoid((55, -55, -55), (28, 25, 50)) & ~hilum_r & below
    lung_left = g.ellipsoid((-75, 0, 110), (62, 88, 135)) & above & inside
    lung_right = g.ellipsoid((75, 0, 110), (62, 88, 135)) & above & inside
    aorta = g.ellipse((-15, -22), (12, 12), (-110, np.inf))
    ivc = g.ellipse((24, -20), (11, 11), (-115, 25)) & below
    autochthon_left = g.ellipse((-35, -88), (22, 20)) & inside
    autochthon_right = g.ellipse((35, -88), (22, 20)) & inside
    return [
        ("lung_left", lung_left, -850.0),
        ("lung_right", lung_right, -850.0),
        ("autochthon_left", autochthon_left, 50.0),
        ("autochthon_right", autochthon_right, 50.0),
        ("liver", liver, 100.0),
        ("spleen", spleen, 110.0),
        ("kidney_left", kidney_left, 160.0),
        ("kidney_right", kidney_right, 160.0),
        ("aorta", aorta, 180.0),
        ("inferior_vena_cava", ivc, 100.0),
    ]


def _vertebrae(g: _Grid) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Vertebrae T1-L5 and the sacrum: (concept ids, label index map 1..n, cortical-bone mask).

    Built from an axial cross-section (body, arch, spinous process) times a level index per slice.
    """
    x, y, z = g.x[:, :, 0], g.y[:, :, 0], g.axes[2]

    def ell(cx, cy, rx, ry):
        return ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 <= 1

    core = ell(0, -55, 19, 14)
    ring = ~ell(0, -82, 8, 8) & ell(0, -82, 15, 13) & (y < -70)
    cross = ell(0, -55, 22, 17) | ring | ((np.abs(x) <= 4) & (y < -90) & (y >= -110))
    sacrum_cross = ell(0, -60, 40, 22)
    names = [f"vertebrae_{level}" for level in reversed(_LEVELS)] + ["sacrum"]  # L5 first, going up
    offset = (z - _L5_CENTRE) / _VERTEBRA_PITCH
    step = np.rint(offset)
    in_body = (np.abs(offset - step) * _VERTEBRA_PITCH <= 12.0) & (step >= 0) & (step < len(_LEVELS))
    level = np.where(in_body, step + 1, 0).astype(np.uint8)  # 1 = L5
    sacrum = (z < _L5_CENTRE - 18) & (z > _L5_CENTRE - 110)
    level[sacrum] = len(names)
    endplate = np.abs(offset - step) * _VERTEBRA_PITCH > 9.0
    index = np.where(cross[:, :, None], level[None, None, :], 0).astype(np.uint8)
    index[:, :, sacrum] = np.where(sacrum_cross[:, :, None], len(names), 0)
    cortex = (index > 0) & (~core[:, :, None] | endplate[None, None, :])
    cortex[:, :, sacrum] = (index[:, :, sacrum] > 0) & ~ell(0, -60, 36, 18)[:, :, None]
    return names, index, cortex


def make_phantom(
    *,
    spacing: tuple[float, float, float] = (3.0, 3.0, 3.0),
    shape: tuple[int, int, int] | None = None,
    seed: int = 0,
    noise: float = 12.0,
) -> Phantom:
    """Build a CT phantom of the trunk (lower chest to pelvis) with its reference labels.

    Args:
        spacing: voxel size in mm.
        shape: grid size; default covers :data:`FIELD_OF_VIEW` at ``spacing``. The anatomy
            is fixed in millimetres around the centre of the grid, so a larger grid shows more.
        seed: random seed of the texture and noise (same seed, same volume).
        noise: standard deviation of the Gaussian noise in HU.

    Returns:
        :class:`Phantom` (image float32 HU, label uint8, value -> concept id). Labels:
        lungs, liver, spleen, kidneys, aorta, inferior vena cava, autochthon muscles,
        vertebrae T1-L5 (those in the field of view) and the sacrum.
    """
    spacing = tuple(float(s) for s in spacing)
    if shape is None:
        shape = tuple(max(2, round(f / s)) for f, s in zip(FIELD_OF_VIEW, spacing, strict=True))
    g = _Grid(tuple(int(n) for n in shape), spacing)
    rng = np.random.default_rng(seed)

    outer = g.ellipse((0, 0), (165, 120))
    inside = g.ellipse((0, 0), (143, 98))  # inside the fat and muscle layers of the wall
    above = g.z > _diaphragm(g)
    image = np.full(g.shape, -1000.0, dtype=np.float32)
    image[outer] = -100.0
    image[g.ellipse((0, 0), (153, 108))] = 50.0
    below = inside & ~above
    texture = _texture(rng, g.shape, max(2, round(24 / min(spacing))))
    image[below] = np.where(texture[below] > 0.55, np.float32(-90.0), np.float32(30.0))
    del texture
    image[inside & above] = 40.0  # mediastinum and chest wall soft tissue

    label = np.zeros(g.shape, dtype=np.uint8)
    concepts: dict[int, str] = {}
    for concept, mask, hu in _organs(g, above, inside):
        _paint(image, label, concepts, concept, mask & outer, hu)
    names, index, cortex = _vertebrae(g)
    for i, concept in enumerate(names, start=1):
        _paint(image, label, concepts, concept, (index == i) & outer, 250.0)
    image[cortex & outer] = 700.0
    disc_z = np.abs(((g.axes[2] - _L5_CENTRE) % _VERTEBRA_PITCH) - 15.0) <= 3.0
    discs = g.ellipse((0, -55), (22, 17)) & (disc_z & (g.axes[2] > _L5_CENTRE))[None, None, :]
    image[discs & (label == 0)] = 90.0
    if noise > 0:
        image += rng.standard_normal(size=g.shape, dtype=np.float32) * np.float32(noise)

    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = [-(n - 1) / 2 * s for n, s in zip(g.shape, spacing, strict=True)]
    meta = {"source": "phantom", "seed": seed}
    return Phantom(
        image=Volume(image, affine, modality="ct", meta=dict(meta)),
        label=Volume(label, affine.copy(), modality=None, meta=dict(meta)),
        concepts=concepts,
    )


def _paint(image: np.ndarray, label: np.ndarray, concepts: dict[int, str], concept: str, mask, hu: float) -> None:
    """Give ``mask`` its HU and the next label value (only if it is in the field of view)."""
    if not mask.any():
        return
    value = len(concepts) + 1
    concepts[value] = concept
    image[mask] = hu
    label[mask] = value
