"""Sliding-window blending (sat.model.blend) against MONAI's sliding_window_inference."""

from __future__ import annotations

import pytest
import torch
from monai.inferers import sliding_window_inference

from sat.model import build_model
from sat.model.blend import FLOOR, blend, gaussian_profile, scan_interval
from sat.model.inference import gate_by_presence
from sat.model.network import vetoed

from .test_model_network import SMALL, straddle_veto


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return straddle_veto(build_model(SMALL).eval())


def _monai(net, image, q, *, overlap, gate):
    """Reference: MONAI's driver with the same separable weight map and the gating rule applied per window."""
    roi = tuple(net.config.patch_size)
    g = [gaussian_profile(r) for r in roi]
    weight = g[0][:, None, None] * g[1][None, :, None] * g[2][None, None, :]

    def predictor(window):
        out = net(window, q, return_aux=False)
        return gate_by_presence(out.logits, out.presence) if gate else out.logits

    with torch.no_grad():
        return sliding_window_inference(image, roi, 2, predictor, overlap=overlap, roi_weight_map=weight)[0]


def test_gaussian_profile_and_scan_interval():
    g = gaussian_profile(16)
    assert g.shape == (16,) and g.max() <= 1 and g.min() >= FLOOR
    torch.testing.assert_close(g, g.flip(0))
    assert scan_interval((40, 16, 30), (16, 16, 16), 0.25) == (12, 16, 12)
    assert scan_interval((40, 40, 40), (16, 16, 16), 0.99) == (1, 1, 1)


@pytest.mark.parametrize("gate", [True, False])
@pytest.mark.parametrize(("shape", "overlap", "batch"), [((40, 30, 16), 0.5, 1), ((37, 16, 29), 0.25, 3)])
def test_blend_equals_monai_sliding_window(net, gate, shape, overlap, batch):
    torch.manual_seed(1)
    image, q = torch.randn(1, 1, *shape), torch.randn(5, 12)
    with torch.no_grad():
        got = blend(net, image, q, overlap=overlap, sw_batch_size=batch, gate=gate)
    want = _monai(net, image, q, overlap=overlap, gate=gate)
    assert got.shape == (5, *shape)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


def test_absent_windows_are_added_analytically(net):
    """A query present in some windows only: its absent windows contribute their presence logit."""
    torch.manual_seed(3)
    image, q = torch.randn(1, 1, 48, 16, 16), torch.randn(8, 12)
    with torch.no_grad():
        presence = torch.cat([net(image[..., i:i + 16, :, :], q).presence for i in (0, 16, 32)])
    mixed = ((~vetoed(presence)).any(0) & vetoed(presence).any(0)).nonzero().flatten()
    assert len(mixed), "the fixture should hold a query judged present in some windows only"
    with torch.no_grad():
        got = blend(net, image, q, overlap=0.5)
    torch.testing.assert_close(got, _monai(net, image, q, overlap=0.5, gate=True), atol=1e-4, rtol=1e-4)


def test_float16_output_and_lean_windows(net):
    torch.manual_seed(2)
    image, q = torch.randn(1, 1, 40, 24, 20), torch.randn(3, 12)
    with torch.no_grad():
        ref = blend(net, image, q, overlap=0.5)
        half = blend(net, image, q, overlap=0.5, dtype=torch.float16)
        lean = blend(net, image, q, overlap=0.5, lean=True)
    assert half.dtype == torch.float16
    torch.testing.assert_close(half.float(), ref, atol=2e-2, rtol=2e-2)
    torch.testing.assert_close(lean, ref, atol=1e-4, rtol=1e-4)
