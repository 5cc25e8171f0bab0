"""Simulated IV contrast (sat.data.contrast) and its use by the patch sampler."""

from __future__ import annotations

import numpy as np
import pytest

from sat.data.contrast import ENHANCEMENT_HU, PHASES, simulate_contrast, tissue_of
from sat.data.sampling import Case, PatchDataset, QueryTable


def _phantom():
    label = np.zeros((24, 24, 12), np.uint16)
    label[2:10, 2:10, 2:10] = 1   # artery
    label[12:22, 2:12, 2:10] = 2  # liver
    label[2:10, 14:22, 2:10] = 3  # bone (no tissue class)
    image = np.random.default_rng(0).normal(0, 0.1, label.shape).astype(np.float32)
    return image, label, {1: "artery", 2: "liver"}


def test_tissue_classes_come_from_the_tree():
    assert tissue_of("aorta") == "artery"
    assert tissue_of("iliac_artery_left") == "artery"
    assert tissue_of("inferior_vena_cava") == "vein"
    assert tissue_of("portal_vein_and_splenic_vein") == "portal_vein"
    assert tissue_of("kidney_right") == "kidney"
    assert tissue_of("autochthon_left") == "muscle"
    assert tissue_of("vertebrae_t12") is None and tissue_of("spinal_cord") is None
    assert tissue_of("not_a_concept") is None


@pytest.mark.parametrize("phase", list(PHASES))
def test_enhancement_is_within_the_phase_ranges(phase):
    image, label, tissues = _phantom()
    hu = 120.0
    out = simulate_contrast(image, label, tissues, hu, np.random.default_rng(3), phase=phase)
    delta = (out - image) * hu
    core = np.zeros(label.shape, bool)
    core[3:9, 3:9, 3:9] = True  # away from the smoothed border
    for value, cls in tissues.items():
        lo, hi = ENHANCEMENT_HU[phase][cls]
        d = delta[core & (label == value)] if value == 1 else delta[13:21, 3:11, 3:9]
        assert np.allclose(d, d.mean(), atol=0.1)  # one offset per structure (in HU)
        assert 0.7 * lo - 1e-3 <= d.mean() <= 1.3 * hi + 1e-3
    assert np.abs(delta[3:9, 15:21, 3:9]).max() < 0.1  # bone does not enhance
    assert np.abs(delta[label == 0]).max() < 0.5 * delta[core & (label == 1)].mean()  # only blurred borders
    assert delta.min() >= -1e-4  # contrast only adds


def test_arteries_outshine_organs_in_the_arterial_phase_and_it_is_seeded():
    image, label, tissues = _phantom()
    a = simulate_contrast(image, label, tissues, 100.0, np.random.default_rng(7), phase="arterial")
    b = simulate_contrast(image, label, tissues, 100.0, np.random.default_rng(7), phase="arterial")
    np.testing.assert_array_equal(a, b)
    assert (a - image)[5, 5, 5] > 3 * (a - image)[16, 6, 5]
    assert simulate_contrast(image, label, {}, 100.0, np.random.default_rng(0)) is image


def _dataset(modality: str, p: float) -> PatchDataset:
    image, label, tissues = _phantom()
    case = Case("toy", "c1", modality, image, label, {"aorta": (1,), "liver": (2,)}, ("aorta", "liver"),
                tissues=tissues, intensity_std=120.0)
    import torch

    table = QueryTable.from_embeddings({(modality, "aorta"): torch.ones(1, 4), (modality, "liver"): -torch.ones(1, 4)})
    return PatchDataset([case], table, patch_size=(16, 16, 8), queries_per_sample=2, augment=True,
                        p_contrast=p, p_thin=0.0, seed=0)


def test_sampler_applies_contrast_to_ct_only():
    ct_on, ct_off, mr_on = _dataset("ct", 1.0), _dataset("ct", 0.0), _dataset("mr", 1.0)
    gains = []
    for i in range(8):
        on, off, mr = ct_on[i], ct_off[i], mr_on[i]
        assert bool((off["image"] == mr["image"]).all())  # MR: never simulated
        for q in range(2):
            mask = on["target"][q].bool()
            if on["presence"][q] and mask.sum() > 20:
                gains.append(float((on["image"][0][mask] - off["image"][0][mask]).mean()))
    assert gains and max(gains) > 0.3 and min(gains) > -0.05
