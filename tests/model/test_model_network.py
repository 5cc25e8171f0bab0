"""Shapes, presets and parameter counts of the SAT network."""

from __future__ import annotations

import math

import pytest
import torch

from sat.errors import ConfigError, InputError
from sat.model import (
    PRESETS,
    ModelConfig,
    build_model,
    count_parameters,
    estimate_flops,
    get_config,
)
from sat.model.network import VETO

SMALL = ModelConfig(
    preset="test-small", widths=(4, 8, 16), depths=(1, 1, 1), decoder_depths=(1, 1), query_dim=32,
    decoder_layers=1, heads=4, ffn_dim=32, token_levels=2, mask_hidden=16, deep_supervision=1,
    text_dim=12, patch_size=(16, 16, 16),
)


def straddle_veto(net, image=None, queries=None):
    """Shift a random network's presence logits to the veto threshold (halfway between the two
    middle values on ``image``/``queries`` when given, so that no pair sits on the threshold), so
    gating vetoes some (window, query) pairs and keeps others (both branches exercised); returns ``net``."""
    with torch.no_grad():
        middle = 0.0
        if image is not None:
            values = net(image, queries).presence.flatten().sort().values
            middle = float(values[len(values) // 2 - 1] + values[len(values) // 2]) / 2
        net.presence_head[-1].bias += math.log(VETO / (1 - VETO)) - middle
    return net


@pytest.mark.parametrize(
    ("name", "target", "device"),
    [("sat-tiny", None, "cpu"), ("sat-nano", 110e6, "meta"), ("sat-pro", 450e6, "meta")],
)
def test_preset_parameter_counts(name, target, device):
    model = build_model(name, device=device)
    n = count_parameters(model)
    if target is None:
        assert 1e6 < n <= 10e6
    else:
        assert abs(n - target) <= 0.1 * target, n
    assert model.config is PRESETS[name]


def test_tiny_preset_is_for_cpu():
    cfg = PRESETS["sat-tiny"]
    assert cfg.spacing == (3.0, 3.0, 3.0)
    assert cfg.text_dim == 384
    assert all(p <= 96 for p in cfg.patch_size)


def test_forward_shapes_shared_and_batched_queries():
    torch.manual_seed(0)
    net = build_model(SMALL).train()
    image = torch.randn(2, 1, 16, 16, 8)
    out = net(image, torch.randn(3, 12))
    assert out.logits.shape == (2, 3, 16, 16, 8)
    assert out.presence.shape == (2, 3)
    assert [a.shape for a in out.aux] == [(2, 3, 8, 8, 4)]
    out = net(image, torch.randn(2, 5, 12), query_mask=torch.ones(2, 5, dtype=torch.bool))
    assert out.logits.shape == (2, 5, 16, 16, 8)
    net.eval()
    assert net(image, torch.randn(3, 12)).aux == []
    assert len(net(image, torch.randn(3, 12), return_aux=True).aux) == 1


def test_queries_are_independent_without_self_attention():
    torch.manual_seed(0)
    net = build_model(SMALL).eval()
    image, q = torch.randn(1, 1, 16, 16, 16), torch.randn(4, 12)
    with torch.no_grad():
        full = net(image, q)
        one = net(image, q[2:3])
    torch.testing.assert_close(one.logits[:, 0], full.logits[:, 2], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(one.presence[:, 0], full.presence[:, 2], atol=1e-5, rtol=1e-5)


def test_self_attention_respects_padding_mask():
    torch.manual_seed(0)
    net = build_model(SMALL.replace(query_self_attention=True)).eval()
    image, q = torch.randn(1, 1, 16, 16, 16), torch.randn(1, 4, 12)
    mask = torch.tensor([[True, True, False, False]])
    q2 = q.clone()
    q2[:, 2:] = torch.randn(1, 2, 12)  # padding content must not matter
    with torch.no_grad():
        a = net(image, q, query_mask=mask)
        b = net(image, q2, query_mask=mask)
        c = net(image, q, query_mask=torch.zeros(1, 4, dtype=torch.bool))
    torch.testing.assert_close(a.logits[:, :2], b.logits[:, :2], atol=1e-5, rtol=1e-5)
    assert torch.isfinite(c.logits).all()


def test_bad_inputs_raise_input_error():
    net = build_model(SMALL).eval()
    with pytest.raises(InputError, match="divisible"):
        net(torch.zeros(1, 1, 10, 16, 16), torch.zeros(1, 12))
    with pytest.raises(InputError, match=r"\[B, 1, X, Y, Z\]"):
        net(torch.zeros(1, 16, 16, 16), torch.zeros(1, 12))
    with pytest.raises(InputError, match="queries"):
        net(torch.zeros(1, 1, 16, 16, 16), torch.zeros(1, 7))


def test_config_round_trip_and_errors():
    for cfg in PRESETS.values():
        assert get_config(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="unknown model preset"):
        get_config("sat-huge")
    with pytest.raises(ConfigError, match="unknown model config keys"):
        ModelConfig.from_dict({"widths": [4, 8], "bogus": 1})
    with pytest.raises(ConfigError, match="divisible"):
        SMALL.replace(patch_size=(15, 16, 16))
    with pytest.raises(ConfigError, match="decoder_depths"):
        SMALL.replace(decoder_depths=(1,))


def test_estimate_flops_grows_with_queries_and_window():
    base = estimate_flops("sat-tiny")
    assert estimate_flops("sat-tiny", queries=61) > base
    assert estimate_flops("sat-tiny", window=(32, 32, 32)) < base < estimate_flops("sat-tiny", window=(64, 64, 64))
