"""Widening a trained network keeps its outputs, then trains the new channels."""

from __future__ import annotations

import pytest
import torch

from sat.errors import ConfigError
from sat.model import build_model
from sat.model.widen import can_widen, widen_into

NET = {"widths": (4, 8, 16, 32), "depths": (2, 1, 1, 1), "decoder_depths": (1, 2, 1), "token_levels": 3,
       "deep_supervision": 2, "query_dim": 16, "heads": 2, "ffn_dim": 32, "mask_hidden": 16, "text_dim": 24,
       "patch_size": (16, 16, 8)}


def _pair(widths):
    torch.manual_seed(0)
    old = build_model(NET).eval()
    for p in old.parameters():  # trained-looking weights: no zero biases, no unit norms
        p.data.add_(0.1 * torch.randn_like(p))
    new = build_model({**NET, "widths": widths}).eval()
    widen_into(new, old)
    return old, new


@pytest.mark.parametrize("widths", [(4, 8, 16, 64), (8, 16, 32, 64), (4, 12, 16, 48)])
def test_the_widened_network_gives_the_same_masks_presence_and_deep_supervision(widths):
    old, new = _pair(widths)
    x, q = torch.randn(2, 1, 16, 16, 8), torch.randn(3, 24)
    a, b = old(x, q, return_aux=True), new(x, q, return_aux=True)
    assert torch.allclose(a.logits, b.logits, atol=1e-4)
    assert torch.allclose(a.presence, b.presence, atol=1e-5)
    for u, v in zip(a.aux, b.aux, strict=True):
        assert torch.allclose(u, v, atol=1e-4)
    assert sum(p.numel() for p in new.parameters()) > sum(p.numel() for p in old.parameters())


def test_the_new_channels_learn_from_the_first_step():
    old, new = _pair((4, 8, 16, 64))
    new.train()
    out = new(torch.randn(1, 1, 16, 16, 8), torch.randn(2, 24))
    out.logits.square().mean().backward()
    grad = new.backbone.decoder[2].blocks[0].conv.weight.grad  # reads [up 16 + 16 new | skip 16]
    assert grad[:, 16:32].abs().sum() > 0  # the silent channels' outgoing weights get gradients


def test_only_wider_levels_with_an_equal_architecture_widen():
    base = build_model(NET).config.to_dict()
    assert can_widen(base, {**base, "widths": [4, 8, 16, 64], "patch_size": [32, 32, 16]})
    assert not can_widen(base, base)
    assert not can_widen(base, {**base, "widths": [4, 8, 8, 64]})
    assert not can_widen(base, {**base, "widths": [4, 8, 16, 64], "query_dim": 32})
    with pytest.raises(ConfigError, match="cannot widen"):
        widen_into(build_model({**NET, "widths": (4, 8, 8, 64)}), build_model(NET))
