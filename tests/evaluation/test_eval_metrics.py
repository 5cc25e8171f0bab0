"""Metric conventions and agreement with an independent numpy/scipy implementation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from sat.errors import InputError
from sat.evaluation.metrics import binary_metrics, dice, hd95, spacing_from_affine, surface_dice

SPACING = (0.8, 1.3, 3.0)  # anisotropic on purpose


def _edges(mask: np.ndarray) -> np.ndarray:
    return mask & ~ndimage.binary_erosion(mask, ndimage.generate_binary_structure(3, 1), border_value=0)


def _ref_distances(a: np.ndarray, b: np.ndarray, spacing) -> tuple[np.ndarray, np.ndarray]:
    """Distances (mm) from each boundary voxel of a to b's boundary and back, by Euclidean distance transform."""
    ea, eb = _edges(a), _edges(b)
    to_b = ndimage.distance_transform_edt(~eb, sampling=spacing)
    to_a = ndimage.distance_transform_edt(~ea, sampling=spacing)
    return to_b[ea], to_a[eb]


def ref_dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def ref_nsd(a: np.ndarray, b: np.ndarray, spacing, tol: float) -> float:
    d_ab, d_ba = _ref_distances(a, b, spacing)
    return float(((d_ab <= tol).sum() + (d_ba <= tol).sum()) / (d_ab.size + d_ba.size))


def ref_hd95(a: np.ndarray, b: np.ndarray, spacing) -> float:
    d_ab, d_ba = _ref_distances(a, b, spacing)
    return float(max(np.percentile(d_ab, 95), np.percentile(d_ba, 95)))


def ellipsoid(shape, centre, radii_mm, spacing) -> np.ndarray:
    grid = np.meshgrid(*[np.arange(n) * s for n, s in zip(shape, spacing, strict=True)], indexing="ij")
    return sum(((g - c * s) / r) ** 2 for g, c, r, s in zip(grid, centre, radii_mm, spacing, strict=True)) <= 1.0


@pytest.fixture(scope="module")
def shapes() -> list[tuple[np.ndarray, np.ndarray]]:
    shape = (48, 40, 16)
    a = ellipsoid(shape, (24, 20, 8), (14.0, 17.0, 15.0), SPACING)
    b = ellipsoid(shape, (26, 19, 8.5), (12.0, 18.0, 18.0), SPACING)
    c = np.roll(a, 2, axis=2)  # 6 mm shift along z
    d = a.copy()
    d[:, :, :3] = True  # a slab touching the image border
    rng = np.random.default_rng(0)
    e = ndimage.binary_opening(ndimage.gaussian_filter(rng.random(shape), 2) > 0.52)
    return [(a, b), (a, c), (a, d), (b, e), (d, e)]


@pytest.mark.parametrize("tol", [0.5, 1.0, 2.0, 3.0, 6.0])
def test_nsd_matches_independent_implementation(shapes, tol):
    for a, b in shapes:
        assert surface_dice(a, b, SPACING, tolerance_mm=tol) == pytest.approx(ref_nsd(a, b, SPACING, tol), abs=1e-6)


def test_dice_and_hd95_match_independent_implementation(shapes):
    for a, b in shapes:
        assert dice(a, b) == pytest.approx(ref_dice(a, b), abs=1e-6)
        assert hd95(a, b, SPACING) == pytest.approx(ref_hd95(a, b, SPACING), rel=1e-4, abs=1e-4)


def test_nsd_tolerance_is_in_millimetres():
    a = np.zeros((20, 20, 12), bool)
    a[5:15, 5:15, 3:9] = True
    shifted = np.roll(a, 1, axis=2)  # one voxel = 3 mm along z, 0.8 mm along x
    assert surface_dice(a, shifted, SPACING, tolerance_mm=3.0) == 1.0
    assert surface_dice(a, shifted, SPACING, tolerance_mm=2.9) < 1.0
    along_x = np.roll(a, 1, axis=0)
    assert surface_dice(a, along_x, SPACING, tolerance_mm=0.8) == 1.0


def test_empty_conventions():
    empty, full = np.zeros((6, 6, 6), bool), np.zeros((6, 6, 6), bool)
    full[2:4, 2:4, 2:4] = True
    assert dice(empty, empty) == 1.0 and surface_dice(empty, empty, SPACING) == 1.0 and hd95(empty, empty, SPACING) == 0.0
    for p, g in ((empty, full), (full, empty)):
        assert dice(p, g) == 0.0
        assert surface_dice(p, g, SPACING) == 0.0
        assert hd95(p, g, SPACING) == pytest.approx(np.linalg.norm(np.array((6, 6, 6)) * SPACING))


def test_binary_metrics_counts_and_volume():
    a = np.zeros((10, 10, 10), bool)
    a[:2, :5, :1] = True  # 10 voxels of 0.8*1.3*3 mm^3
    m = binary_metrics(a, a, SPACING, tolerance_mm=1.0)
    assert m["dice"] == 1.0 and m["nsd"] == 1.0 and np.isnan(m["hd95"])
    assert m["gt_voxels"] == 10 and m["pred_ml"] == pytest.approx(10 * 0.8 * 1.3 * 3.0 / 1000)
    assert binary_metrics(a, a, SPACING, with_hd95=True)["hd95"] == 0.0


def test_errors_and_spacing():
    a = np.zeros((4, 4, 4), bool)
    with pytest.raises(InputError, match="shape"):
        dice(a, np.zeros((4, 4, 5), bool))
    with pytest.raises(InputError, match="tolerance"):
        surface_dice(a, a, (1, 1, 1), tolerance_mm=-1)
    with pytest.raises(InputError, match="spacing"):
        surface_dice(a, a, (1, 1))
    affine = np.array([[0, -2.0, 0, 5], [0.5, 0, 0, 1], [0, 0, 3, 0], [0, 0, 0, 1]])
    assert spacing_from_affine(affine) == (0.5, 2.0, 3.0)
