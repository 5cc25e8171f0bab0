"""The procedural CT phantom: deterministic, anatomically placed, realistic HU."""

from __future__ import annotations

import numpy as np
import pytest
from phantom import FIELD_OF_VIEW, make_phantom

from sat import io


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(spacing=(5.0, 5.0, 5.0), seed=3)


def _centre(ph, concept: str) -> np.ndarray:
    """World (RAS mm) centre of a concept's label."""
    idx = np.argwhere(ph.mask(concept)).mean(axis=0)
    return (ph.label.affine @ np.r_[idx, 1.0])[:3]


def test_geometry_and_types(phantom):
    assert phantom.image.shape == tuple(round(f / 5.0) for f in FIELD_OF_VIEW)
    assert phantom.label.shape == phantom.image.shape
    assert phantom.image.array.dtype == np.float32 and phantom.label.array.dtype == np.uint8
    assert phantom.image.modality == "ct"
    np.testing.assert_allclose(phantom.image.affine[:3, :3], np.diag([5.0, 5.0, 5.0]))
    np.testing.assert_array_equal(phantom.image.affine, phantom.label.affine)
    assert set(np.unique(phantom.label.array)) == {0, *phantom.concepts}


def test_expected_structures_present(phantom):
    ids = set(phantom.concepts.values())
    for concept in ("lung_left", "lung_right", "liver", "spleen", "kidney_left", "kidney_right", "aorta",
                    "vertebrae_l1", "vertebrae_l5", "vertebrae_t12"):
        assert concept in ids
        assert phantom.mask(concept).sum() > 10


def test_left_right_and_anterior_posterior_placement(phantom):
    # RAS+: +x is the patient's right, +y anterior, +z superior
    assert _centre(phantom, "liver")[0] > 20
    assert _centre(phantom, "spleen")[0] < -20
    assert _centre(phantom, "kidney_right")[0] > 20 and _centre(phantom, "kidney_left")[0] < -20
    assert _centre(phantom, "kidney_right")[2] < _centre(phantom, "kidney_left")[2]  # right kidney lower
    assert _centre(phantom, "aorta")[0] < 0 < _centre(phantom, "inferior_vena_cava")[0]
    assert _centre(phantom, "vertebrae_l1")[1] < _centre(phantom, "aorta")[1]  # spine posterior to aorta
    assert _centre(phantom, "vertebrae_l5")[2] < _centre(phantom, "vertebrae_l1")[2] < _centre(phantom, "vertebrae_t12")[2]
    assert _centre(phantom, "lung_left")[2] > _centre(phantom, "liver")[2]


def test_hounsfield_units(phantom):
    img = phantom.image.array
    expected = {"lung_left": -850, "liver": 100, "spleen": 110, "kidney_left": 160, "aorta": 180}
    for concept, hu in expected.items():
        assert abs(float(np.median(img[phantom.mask(concept)])) - hu) < 20, concept
    assert float(np.median(img[:, :, img.shape[2] // 2][0])) < -900  # air at the edge of the field of view
    assert float(img[phantom.mask("vertebrae_l2")].mean()) > 200  # bone
    assert io.infer_modality(img) == "ct"


def test_seeded():
    a, b = make_phantom(spacing=(8.0, 8.0, 8.0), seed=1), make_phantom(spacing=(8.0, 8.0, 8.0), seed=1)
    c = make_phantom(spacing=(8.0, 8.0, 8.0), seed=2)
    np.testing.assert_array_equal(a.image.array, b.image.array)
    assert not np.array_equal(a.image.array, c.image.array)
    np.testing.assert_array_equal(a.label.array, c.label.array)  # anatomy does not depend on the seed


def test_mask_union_and_unknown(phantom):
    both = phantom.mask(["kidney_left", "kidney_right"])
    assert both.sum() == phantom.mask("kidney_left").sum() + phantom.mask("kidney_right").sum()
    assert not phantom.mask("brain").any()


def test_custom_grid_and_noise_free():
    ph = make_phantom(spacing=(4.0, 4.0, 6.0), shape=(30, 40, 20), noise=0.0)
    assert ph.image.shape == (30, 40, 20) and ph.image.spacing == (4.0, 4.0, 6.0)
    assert float(ph.image.array[ph.mask("liver")].std()) == 0.0


def test_round_trip_through_nifti(tmp_path, phantom):
    path = io.save(phantom.image, tmp_path / "ct.nii.gz")
    loaded = io.load(path)
    assert loaded.modality == "ct"
    np.testing.assert_allclose(loaded.affine, phantom.image.affine, atol=1e-4)
    np.testing.assert_allclose(loaded.array, phantom.image.array, atol=1e-3)
