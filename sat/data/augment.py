"""Patch geometry and augmentation for training: crop/pad, thin slabs, spatial, per-structure and MONAI intensity augmentation (no left-right flips)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from sat.errors import ConfigError

__all__ = ["Augmentation", "ROTATE", "ZOOM"]

ZOOM = (0.85, 1.15)  # default magnification range (low, high)
ROTATE = (0.1, 0.1, 0.26)  # default rotation range, radians about x, y, z


def _crop_pad(array: np.ndarray, lo: Sequence[int], size: Sequence[int], value: float) -> np.ndarray:
    """array[lo:lo+size] with out-of-bounds parts filled with ``value``."""
    out = np.full(tuple(size), value, dtype=np.float32 if array.dtype.kind == "f" else array.dtype)
    src, dst = [], []
    for start, n, dim in zip(lo, size, array.shape, strict=True):
        a, b = max(start, 0), min(start + n, dim)
        if b <= a:
            return out
        src.append(slice(a, b))
        dst.append(slice(a - start, b - start))
    out[tuple(dst)] = array[tuple(src)]
    return out


def _thin(image: np.ndarray, label: np.ndarray, rng, min_thin: int, pad_value: float):
    """Keep a central z slab (as sliding-window inference pads a thin volume) and blank the rest."""
    z = image.shape[2]
    if z <= min_thin:
        return image, label
    t = int(rng.integers(min_thin, z))
    a = (z - t) // 2
    image = image.copy()
    label = label.copy()
    image[:, :, :a] = pad_value
    image[:, :, a + t:] = pad_value
    label[:, :, :a] = 0
    label[:, :, a + t:] = 0
    return image, label


def _rotation(angles: Sequence[float]) -> np.ndarray:
    """3x3 rotation about x, then y, then z (radians), in array-axis order."""
    cx, cy, cz = np.cos(angles)
    sx, sy, sz = np.sin(angles)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


class Augmentation:
    """Augmentation of a cropped (image, label) box into a ``patch``-sized sample.

    Spatial (one ``grid_sample``, bilinear image / nearest label, border padding): random
    rotation (up to ``rotate`` radians about x, y, z; z is the axial in-plane axis) and
    isotropic-ish scaling (a magnification drawn log-uniformly in ``zoom`` = (low, high), times
    +-3 % per axis; above 1 the anatomy looks larger), applied with probability ``p_spatial``;
    otherwise a centre crop. People differ in organ size (a spleen may be twice another's), so a
    wide range such as nnU-Net's (0.7, 1.4) teaches sizes one training subject does not show.
    Elastic (same ``grid_sample``, probability ``p_elastic``): a smooth random
    displacement, normal with ``elastic`` voxels standard deviation per axis at control points
    every ``elastic_spacing`` voxels, trilinearly interpolated between them: organs of another
    person differ in shape, not only in size and pose. Per structure (:meth:`structures`):
    with probability ``p_structure`` a sample gets, for each labelled structure in it with
    probability 1/2, a uniform intensity offset in +-``structure_shift`` (standardized units;
    CT: about 1/3 of the body's HU spread): contrast phases and enhancement differ between
    scans, so vessels and organs must be recognised by shape and context more than by their
    exact brightness. Intensity (MONAI): scale, shift, contrast (gamma), gaussian smoothing
    and noise. No flips: left/right is part of what the prompt says.
    """

    def __init__(
        self,
        patch: Sequence[int],
        *,
        p_spatial: float = 0.8,
        rotate: Sequence[float] = ROTATE,
        zoom: Sequence[float] = ZOOM,
        p_elastic: float = 0.0,
        elastic: float = 2.0,
        elastic_spacing: int = 16,
        p_structure: float = 0.0,
        structure_shift: float = 0.6,
    ) -> None:
        from monai.transforms import (
            Compose,
            RandAdjustContrastd,
            RandGaussianNoised,
            RandGaussianSmoothd,
            RandScaleIntensityd,
            RandShiftIntensityd,
        )

        self.patch = tuple(int(p) for p in patch)
        if len(zoom) != 2 or not 0 < zoom[0] <= zoom[1]:
            raise ConfigError(f"zoom must be (low, high) with 0 < low <= high, got {zoom}")
        self.p_spatial, self.rotate = p_spatial, np.asarray(rotate, float)
        self.zoom = (float(zoom[0]), float(zoom[1]))
        self.p_elastic, self.elastic = float(p_elastic), float(elastic)
        self.elastic_spacing = max(1, int(elastic_spacing))
        self.p_structure, self.structure_shift = float(p_structure), float(structure_shift)
        self.intensity_transform = Compose([
            RandScaleIntensityd(keys="image", factors=0.15, prob=0.5),
            RandShiftIntensityd(keys="image", offsets=0.2, prob=0.5),
            RandAdjustContrastd(keys="image", gamma=(0.7, 1.5), prob=0.3),
            RandGaussianSmoothd(keys="image", sigma_x=(0.3, 1.0), sigma_y=(0.3, 1.0), sigma_z=(0.3, 1.0), prob=0.15),
            RandGaussianNoised(keys="image", std=0.1, prob=0.2),
        ])

    def matrix(self, rng: np.random.Generator) -> np.ndarray:
        """Random 3x3 output-to-input voxel map (rotation / scale), identity when not applied."""
        if rng.random() >= self.p_spatial:
            return np.eye(3)
        angles = rng.uniform(-self.rotate, self.rotate)
        zoom = np.exp(rng.uniform(*np.log(self.zoom))) + rng.uniform(-0.03, 0.03, 3)
        return _rotation(angles) @ np.diag(1.0 / zoom)

    def displacement(self, rng: np.random.Generator, box: Sequence[int]) -> torch.Tensor | None:
        """Random smooth displacement [1, *patch, 3] in grid_sample's normalised (z, y, x) input coords, or None."""
        import torch.nn.functional as F

        if self.p_elastic <= 0 or rng.random() >= self.p_elastic:
            return None
        control = [int(np.ceil(p / self.elastic_spacing)) + 1 for p in self.patch]
        field = torch.from_numpy(rng.normal(0.0, self.elastic, (1, 3, *control)).astype(np.float32))
        field = F.interpolate(field, size=self.patch, mode="trilinear", align_corners=True)  # voxels, axes (x, y, z)
        field = field * torch.tensor([2.0 / b for b in box]).view(1, 3, 1, 1, 1)  # -> normalised input units
        return field.flip(1).permute(0, 2, 3, 4, 1)

    @property
    def margin(self) -> float:
        """Box size / patch size the spatial map may read (the smallest zoom sees the most)."""
        return max(1.3, 1.1 / self.zoom[0])

    def spatial(self, image: np.ndarray, label: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """[X, Y, Z] box arrays -> [*patch] float32 image and integer label, sharing one random map."""
        import torch.nn.functional as F

        rng = np.random.default_rng(seed)
        a = self.matrix(rng)
        box, out = np.array(image.shape, float), np.array(self.patch, float)
        theta = np.diag(2.0 / box) @ a @ np.diag(out / 2.0)  # normalised output -> input coords
        theta = theta[::-1, ::-1].copy()  # grid_sample orders coordinates (z, y, x)
        affine = torch.zeros(1, 3, 4)
        affine[0, :, :3] = torch.from_numpy(theta)
        grid = F.affine_grid(affine, [1, 1, *self.patch], align_corners=False)
        shift = self.displacement(rng, image.shape)
        if shift is not None:
            grid = grid + shift
        img = F.grid_sample(torch.from_numpy(image.astype(np.float32))[None, None], grid, mode="bilinear",
                            padding_mode="border", align_corners=False)
        lab = F.grid_sample(torch.from_numpy(label.astype(np.float32))[None, None], grid, mode="nearest",
                            padding_mode="border", align_corners=False)
        return img[0, 0].numpy(), lab[0, 0].round().numpy().astype(label.dtype)

    def structures(self, image: np.ndarray, label: np.ndarray, seed: int) -> np.ndarray:
        """[X, Y, Z] image, integer label -> image with random per-structure offsets (a copy when changed)."""
        rng = np.random.default_rng(seed)
        if self.p_structure <= 0 or rng.random() >= self.p_structure:
            return image
        values = np.unique(label)
        values = values[values > 0]
        chosen = values[rng.random(values.size) < 0.5]
        if chosen.size == 0:
            return image
        offsets = np.zeros(int(values.max()) + 1, np.float32)
        offsets[chosen] = rng.uniform(-self.structure_shift, self.structure_shift, chosen.size)
        return image + offsets[label]

    def intensity(self, image: np.ndarray, seed: int) -> np.ndarray:
        """[X, Y, Z] float32 image -> intensity-augmented copy."""
        self.intensity_transform.set_random_state(seed=seed)
        out = self.intensity_transform({"image": torch.from_numpy(image[None].astype(np.float32))})
        return np.asarray(out["image"].detach().cpu())[0].astype(np.float32, copy=False)
