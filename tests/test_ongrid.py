"""Model-space thresholding and labelling (sat._ongrid)."""

from __future__ import annotations

import numpy as np
import torch

from sat._ongrid import _threshold_and_label


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
