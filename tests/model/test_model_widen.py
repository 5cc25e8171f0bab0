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


def test_a_prompt_head_widened_with_its_network_gives_the_same_correction():
    from sat.model.prompt_head import PromptHead, network_parts
    from sat.model.widen import widen_head

    old, new = _pair((8, 16, 32, 32))  # decoder levels 0-2, which the head reads, are wider
    torch.manual_seed(1)
    head = PromptHead.for_network(old.config, features=(4, 4, 8, 8, 8, 4)).eval()
    for p in head.parameters():  # a trained head: its last layer is not zero
        p.data.add_(0.1 * torch.randn_like(p))
    wide = widen_head(head, (8, 16, 32)).eval()
    assert wide.config.feature_widths == (8, 16, 32)
    x, q = torch.randn(1, 1, 32, 32, 16), torch.randn(1, 24)  # the head's U-Net halves it four times
    guidance, flag = torch.rand(1, 3, 32, 32, 16), torch.ones(1)
    (a_logit, a_feats), (b_logit, b_feats) = network_parts(old, x, q), network_parts(new, x, q)
    with torch.no_grad():
        a, b = head(x, a_feats, a_logit, flag, guidance), wide(x, b_feats, b_logit, flag, guidance)
    assert torch.allclose(a, b, atol=1e-4)
    with pytest.raises(ConfigError, match="cannot widen a head"):
        widen_head(head, (2, 16, 32))
