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
