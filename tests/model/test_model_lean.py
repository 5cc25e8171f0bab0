"""The slab-wise inference forward equals the plain forward."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sat.model import ModelConfig, build_model
from sat.model.inference import gate_by_presence
from sat.model.lean import composite_up_kernel, lean_forward
from sat.model.network import vetoed

from .test_model_network import straddle_veto

DEEP = ModelConfig(
    preset="test-deep", widths=(6, 8, 16), depths=(3, 1, 2), decoder_depths=(3, 1), query_dim=16,
    decoder_layers=1, heads=2, ffn_dim=16, token_levels=3, mask_hidden=8, deep_supervision=1,
    text_dim=10, patch_size=(16, 16, 16),
)


@pytest.mark.parametrize("slab", [3, 64])
def test_lean_forward_equals_plain_forward(slab):
    torch.manual_seed(0)
    net = build_model(DEEP).eval()
    image = torch.randn(2, 1, 24, 16, 12) * 2 + 0.5
    queries = torch.randn(2, 5, 10)
    with torch.no_grad():
        ref = net(image, queries)
    out = lean_forward(net, image, queries, slab=slab)
    torch.testing.assert_close(out.logits, ref.logits, atol=1e-3, rtol=1e-3)
    assert (out.logits - ref.logits).abs().max() < 1e-4
    torch.testing.assert_close(out.presence, ref.presence, atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_lean_forward_tiny_preset_and_gating():
    torch.manual_seed(0)
    image, q = torch.randn(1, 1, 32, 32, 32), torch.randn(7, 384)
    net = straddle_veto(build_model("sat-tiny").eval(), image, q)
    with torch.no_grad():
        ref = net(image, q)
    out = lean_forward(net, image, q, slab=6)
    assert (out.logits - ref.logits).abs().max() < 1e-3
    gated = lean_forward(net, image, q, gate=True)
    assert vetoed(ref.presence).any() and (~vetoed(ref.presence)).any()
    torch.testing.assert_close(gated.logits, gate_by_presence(ref.logits, ref.presence), atol=1e-3, rtol=1e-3)


def test_composite_up_kernel_equals_upsample_then_conv():
    torch.manual_seed(0)
    wu, wc = torch.randn(5, 4, 2, 2, 2), torch.randn(3, 4, 3, 3, 3)
    x = torch.randn(1, 5, 3, 4, 2)
    ref = F.conv3d(F.conv_transpose3d(x, wu, stride=2), wc, padding=1)
    r = F.conv3d(F.pad(x, (1, 1, 1, 1, 1, 1)), composite_up_kernel(wu, wc))
    out = torch.zeros_like(ref)
    parities = [(px, py, pz) for px in (0, 1) for py in (0, 1) for pz in (0, 1)]
    for g, (px, py, pz) in enumerate(parities):
        out[:, :, px::2, py::2, pz::2] = r[:, 3 * g: 3 * g + 3, px: px + 3, py: py + 4, pz: pz + 2]
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)
