"""Simulated stomach/bowel content (sat.data.lumen) and its use by the patch sampler."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sat.data.lumen import CONTENT_HU, simulate_lumen
from sat.data.sampling import Case, PatchDataset, QueryTable
from sat.preprocess import CT_WINDOW

HU, ZERO = 120.0, -25.0  # HU per standardized unit, HU at 0


def _phantom():
    label = np.zeros((24, 24, 16), np.uint16)
    label[2:12, 2:22, 2:14] = 1   # stomach (hollow)
    label[14:22, 2:12, 2:14] = 2  # liver (solid)
    image = np.random.default_rng(0).normal(0, 0.1, label.shape).astype(np.float32)
    return image, label, {1: "bowel", 2: "liver"}


def _hu(x):
    return x * HU + ZERO


def test_gas_rises_anterior_above_the_fluid_and_the_wall_and_other_tissue_stay():
    image, label, tissues = _phantom()
    out = simulate_lumen(image, label, tissues, HU, ZERO, np.random.default_rng(0), gas_fraction=0.5,
                         content="fluid")
    lo, hi = CONTENT_HU["fluid"][1]
    posterior, anterior = _hu(out[5:9, 5:8, 5:11]), _hu(out[5:9, 16:19, 5:11])  # axis 1 = anterior (RAS)
    assert np.abs(anterior - CT_WINDOW[0]).mean() < 15  # gas, at the CT window's floor
    assert lo - 15 < posterior.mean() < hi + 15 and posterior.std() < 25
    np.testing.assert_array_equal(out[label == 2], image[label == 2])  # solid organ untouched
    np.testing.assert_array_equal(out[:, :, 15], image[:, :, 15])  # beyond the wall's blur
    assert abs(_hu(out[2, 10, 8]) - _hu(image[2, 10, 8])) < 0.5 * abs(CT_WINDOW[0] - ZERO)  # the wall voxel
    level = [_hu(out[6, y, 8]) for y in range(3, 21)]
    assert level[0] > level[-1] and np.argmax(np.diff(level) < -100)  # one step down: the gas-fluid level


@pytest.mark.parametrize("content", list(CONTENT_HU))
def test_content_without_gas_is_within_its_range_and_seeded(content):
    image, label, tissues = _phantom()
    a = simulate_lumen(image, label, tissues, HU, ZERO, np.random.default_rng(3), gas_fraction=0.0, content=content)
    b = simulate_lumen(image, label, tissues, HU, ZERO, np.random.default_rng(3), gas_fraction=0.0, content=content)
    np.testing.assert_array_equal(a, b)
    lo, hi = CONTENT_HU[content][1]
    core = _hu(a[4:10, 4:20, 4:12])
    assert lo - 10 < core.mean() < hi + 10
    assert simulate_lumen(image, label, {2: "liver"}, HU, ZERO, np.random.default_rng(0)) is image
    assert simulate_lumen(image, label, tissues, HU, ZERO, np.random.default_rng(0), p_structure=0.0) is image


def _dataset(modality: str, p: float, *, mean: float | None = ZERO) -> PatchDataset:
    image, label, tissues = _phantom()
    case = Case("toy", "c1", modality, image, label, {"stomach": (1,), "liver": (2,)}, ("stomach", "liver"),
                tissues=tissues, intensity_std=HU, intensity_mean=mean)
    table = QueryTable.from_embeddings({(modality, "stomach"): torch.ones(1, 4), (modality, "liver"): -torch.ones(1, 4)})
    return PatchDataset([case], table, patch_size=(16, 16, 8), queries_per_sample=2, augment=True,
                        p_lumen=p, p_thin=0.0, seed=0)


def test_sampler_redraws_lumen_on_ct_with_known_scale_only():
    on, off, mr, unknown = _dataset("ct", 1.0), _dataset("ct", 0.0), _dataset("mr", 1.0), _dataset("ct", 1.0, mean=None)
    changed = 0
    for i in range(8):
        a, b = on[i], off[i]
        assert torch.equal(off[i]["image"], mr[i]["image"]) and torch.equal(b["image"], unknown[i]["image"])
        q = int(b["queries"][:, 0].argmax())  # the stomach's query (embedding of ones)
        if b["presence"][q] and b["target"][q].sum() > 100:  # stomach in the patch: mostly refilled
            stomach = b["target"][q].bool()
            changed += int((a["image"][0][stomach] - b["image"][0][stomach]).abs().mean() > 0.1)
    assert changed >= 3
