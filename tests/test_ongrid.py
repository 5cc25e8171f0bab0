"""Model-space thresholding and labelling, and the exact nearest mapping onto the input grid (sat.preprocess.ongrid)."""

from __future__ import annotations

import math
import tracemalloc
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from sat import io, preprocess
from sat.knowledge.prompts import PromptPlan
from sat.preprocess.ongrid import _NearestLookup, _threshold_and_label, to_input_grid


def test_float16_logits_give_the_float32_decisions():
    torch.manual_seed(0)
    logits = torch.randn(3, 12, 10, 8) * 4
    logits = logits.half().float()  # values exactly representable in both dtypes
    masks32, labels32 = _threshold_and_label(list(logits), 0.5)
    masks16, labels16 = _threshold_and_label(list(logits.half()), 0.5)
    np.testing.assert_array_equal(masks16, masks32)
    np.testing.assert_array_equal(labels16, labels32)
    assert masks32.sum() > 0
    best = logits.argmax(0).numpy() + 1
    positive = (logits > 0).any(0).numpy()
    np.testing.assert_array_equal(labels32[positive], best[positive])
    assert (labels32[~positive] == 0).all()


def test_union_members_keep_their_own_largest_component_and_compete_inside_it():
    a = torch.full((12, 10, 8), -5.0)
    a[:3, :3, :3] = 4.0  # the big piece of member a
    a[9:, 8:, 6:] = 6.0  # a small second piece of a, most probable there
    b = torch.full((12, 10, 8), -5.0)
    b[9:, 8:, 6:] = 1.0  # member b covers a's small piece less confidently
    other = torch.full((12, 10, 8), -5.0)
    other[9:, 8:, 6:] = 3.0  # another prompt, above b but below a's dropped piece
    masks, labels = _threshold_and_label([(a, b), (other,), ()], 0.5, [(True, False), False, ()])
    assert masks[0][:3, :3, :3].all() and masks[0][9:, 8:, 6:].all()  # b's mask keeps the corner in the union
    assert masks[0].sum() == 27 + 3 * 2 * 2
    # in the corner the union competes with b's logit (1), not with a's dropped piece (6): the other prompt wins
    assert (labels[9:, 8:, 6:] == 2).all() and (labels[:3, :3, :3] == 1).all()
    assert not masks[2].any()  # no members (an untrained prompt answered empty): an empty mask


def _random_record(rng: np.random.Generator) -> preprocess.Record:
    """A record with a random axis permutation, flips, anisotropic voxels, target spacing and crop."""
    shape = tuple(int(n) for n in rng.integers(3, 41, size=3))
    linear = np.zeros((3, 3))
    linear[rng.permutation(3), np.arange(3)] = rng.choice([-1.0, 1.0], size=3) * rng.uniform(0.4, 5.0, size=3)
    if rng.random() < 0.3:  # slightly oblique: the orientation still snaps to the nearest axes
        angle = rng.uniform(-0.2, 0.2)
        linear = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]]) @ linear
    affine = np.eye(4)
    affine[:3, :3], affine[:3, 3] = linear, rng.uniform(-50, 50, size=3)
    spacing = float(rng.uniform(0.5, 6.0)) if rng.random() < 0.5 else tuple(rng.uniform(0.5, 6.0, size=3))
    crop = None
    if rng.random() < 0.6:
        starts = [int(rng.integers(0, n - 1)) for n in shape]
        crop = [[a, int(rng.integers(a + 1, n + 1))] for a, n in zip(starts, shape, strict=True)]
    orientation = "RAS" if rng.random() < 0.7 else "".join(rng.permutation(list("LPI")))
    reference = io.Volume(np.zeros(shape, np.uint8), affine, "ct")
    return preprocess.plan(reference, spacing=spacing, orientation=orientation, crop_box=crop)


@pytest.mark.parametrize("seed", range(40))
def test_record_lookup_is_preprocess_invert_bit_for_bit(seed):
    rng = np.random.default_rng(seed)
    record = _random_record(rng)
    lookup = _NearestLookup.from_record(record)
    model_labels = rng.integers(0, 7, size=record.model_shape).astype(np.uint8)
    expected = preprocess.invert(model_labels, record, mode="nearest")
    full = tuple(slice(0, n) for n in record.original_shape)
    got = lookup.gather(model_labels, full)
    assert got.dtype == expected.dtype and got.flags.c_contiguous
    np.testing.assert_array_equal(got, expected)
    box = tuple(slice(int(a), int(rng.integers(a + 1, n + 1)))
                for a, n in ((int(rng.integers(0, n)), n) for n in record.original_shape))
    np.testing.assert_array_equal(lookup.gather(model_labels, box), expected[box])
    mask = model_labels == 3
    np.testing.assert_array_equal(lookup.paint(mask, tuple(record.original_shape)),
                                  preprocess.invert(mask, record, mode="nearest"))
    assert lookup.count(mask) == int(preprocess.invert(mask, record, mode="nearest").sum())


@pytest.mark.parametrize("seed", range(10))
def test_labelmap_and_masks_on_the_input_grid_equal_preprocess_invert(seed):
    rng = np.random.default_rng(100 + seed)
    record = _random_record(rng)
    logits = [torch.from_numpy(rng.normal(size=record.model_shape).astype(np.float32)) for _ in range(3)]
    plans = [SimpleNamespace(prompt=f"p{i}") for i in range(3)]
    crops, labelmap = to_input_grid(logits, plans, record, 0.5)
    _, model_labels = _threshold_and_label(logits, 0.5)
    expected = preprocess.invert(model_labels, record, mode="nearest")
    assert labelmap.dtype == np.uint8
    np.testing.assert_array_equal(labelmap, expected)
    for i, logit in enumerate(logits):
        mask = preprocess.invert(logit.numpy() > 0, record, mode="nearest")
        np.testing.assert_array_equal(crops[f"p{i}"].full(tuple(record.original_shape)), mask)
        assert crops[f"p{i}"].voxels == int(mask.sum())


def test_many_prompts_give_a_uint16_labelmap():
    record = _random_record(np.random.default_rng(7))
    logits = [torch.full(record.model_shape, -1.0) for _ in range(300)]
    logits[280][:] = 1.0
    _, labelmap = to_input_grid(logits, [SimpleNamespace(prompt=str(i)) for i in range(300)], record, 0.5)
    assert labelmap.dtype == np.uint16
    assert set(np.unique(labelmap)) <= {0, 281}


def test_the_input_grid_holds_nothing_but_the_labelmap():
    """No full-size temporary (index volume, int64 copy, second labelmap) while mapping onto the input grid."""
    shape = (160, 150, 140)
    reference = io.Volume(np.zeros(shape, np.uint8), np.diag([-1.0, 1.0, 1.5, 1.0]), "ct")
    record = preprocess.plan(reference, spacing=5.0)
    rng = np.random.default_rng(0)
    logits = [torch.from_numpy(rng.normal(size=record.model_shape).astype(np.float32)) for _ in range(2)]
    plans = [SimpleNamespace(prompt="a"), SimpleNamespace(prompt="b")]
    tracemalloc.start()
    try:
        crops, labelmap = to_input_grid(logits, plans, record, 0.5)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    model_bytes = 8 * math.prod(record.model_shape)  # masks, labels, running maximum (model space)
    assert labelmap.shape == shape
    assert peak < labelmap.nbytes + model_bytes + (1 << 20), f"peak {peak / 2**20:.1f} MiB"
    tracemalloc.start()
    try:
        mask = crops["a"].full(shape)  # random logits: the bounding box is the whole grid
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert mask.any() and peak < mask.nbytes + (1 << 20), f"peak {peak / 2**20:.1f} MiB"  # the mask, no copy


@pytest.mark.parametrize("crop", [False, True])
@pytest.mark.parametrize("affine,spacing", [
    (np.diag([4.0, 4.0, 4.0, 1.0]), 6.0),
    (np.array([[0, 0, -2.0, 10], [-0.7, 0, 0, 5], [0, 3.0, 0, -4], [0, 0, 0, 1]]), 1.5),
    (np.diag([-0.8, -0.8, 5.0, 1.0]), (3.0, 1.0, 2.0)),
])
def test_bounding_box_inversion_matches_preprocess_invert(affine, spacing, crop):
    rng = np.random.default_rng(1)
    array = rng.normal(0, 100, (30, 24, 14)).astype(np.float32)
    array[:4] = -1000.0
    volume = io.load((array, affine), modality="ct")
    _, record = preprocess.standardize(volume, spacing=spacing, crop_foreground=crop)
    logits = [torch.from_numpy(rng.normal(size=record.model_shape).astype(np.float32)) for _ in range(3)]
    logits[1][:] = -5.0  # an empty mask
    plans = [PromptPlan(f"p{i}", None, "text", (f"p{i}",), ()) for i in range(3)]
    crops, labelmap = to_input_grid(logits, plans, record, 0.5)
    for i, logit in enumerate(logits):
        full = preprocess.invert(logit.numpy() > 0, record, mode="nearest")
        np.testing.assert_array_equal(crops[f"p{i}"].full(volume.shape), full)
        assert crops[f"p{i}"].voxels == int(full.sum())  # counted in model space, exactly
    assert crops["p1"].voxels == 0
    assert labelmap.shape == volume.shape and labelmap.dtype == np.uint8
