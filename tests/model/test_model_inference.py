"""Sliding-window predict() and the presence gating rule."""

from __future__ import annotations

import pytest
import torch

from sat.errors import InputError
from sat.model import build_model, predict, sw_batch_size_for
from sat.model.inference import gate_by_presence, window_memory_bytes
from sat.model.network import vetoed

from .test_model_network import SMALL, straddle_veto


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return straddle_veto(build_model(SMALL).eval())


def test_single_window_equals_forward(net):
    image, q = torch.randn(1, 1, 16, 16, 16), torch.randn(3, 12)
    with torch.no_grad():
        out = net(image, q)
    expected = gate_by_presence(out.logits, out.presence)[0]
    got = predict(net, image, q)
    assert got.shape == (3, 16, 16, 16) and got.dtype == torch.float32
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    ungated = predict(net, image, q, presence_gating=False)
    torch.testing.assert_close(ungated, out.logits[0], atol=1e-5, rtol=1e-5)


def test_many_windows_padding_batching_and_float16(net):
    image, q = torch.randn(30, 20, 9), torch.randn(2, 12)  # smaller than the window along z
    a = predict(net, image, q, overlap=0.5, sw_batch_size=1)
    b = predict(net, image[None, None], q, overlap=0.5, sw_batch_size=4)
    assert a.shape == (2, 30, 20, 9)
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    h = predict(net, image, q, overlap=0.5, accumulate_dtype=torch.float16)
    assert h.dtype == torch.float16
    torch.testing.assert_close(h.float(), a, atol=2e-2, rtol=2e-2)
    assert not net.training


def test_predict_restores_training_mode(net):
    net.train()
    try:
        predict(net, torch.randn(16, 16, 16), torch.randn(1, 12))
        assert net.training
    finally:
        net.eval()


def test_predict_rejects_bad_input(net):
    with pytest.raises(InputError, match="NaN"):
        predict(net, torch.full((16, 16, 16), float("nan")), torch.randn(1, 12))
    with pytest.raises(InputError, match="queries"):
        predict(net, torch.zeros(16, 16, 16), torch.randn(2, 3, 12))
    with pytest.raises(InputError, match="overlap"):
        predict(net, torch.zeros(16, 16, 16), torch.randn(1, 12), overlap=1.0)
    with pytest.raises(InputError, match=r"\[1, 1, X, Y, Z\]"):
        predict(net, torch.zeros(2, 1, 16, 16, 16), torch.randn(1, 12))


def test_gate_by_presence_rule():
    logits = torch.tensor([[[3.0, -3.0, 0.5], [3.0, -3.0, 0.5]]])  # [B=1, N=2, 3 voxels]
    presence = torch.tensor([[-6.0, -2.0]])  # presence probabilities 0.25 % and 12 %
    gated = gate_by_presence(logits, presence)
    assert gated[0, 0].tolist() == [-6.0, -6.0, -6.0]  # vetoed: every voxel gets the presence logit
    assert gated[0, 1].tolist() == [3.0, -3.0, 0.5]  # above 1 %: unchanged


def test_presence_veto_threshold():
    logits, presence = torch.ones(1, 2, 3), torch.tensor([[-2.0, 1.0]])
    assert gate_by_presence(logits, presence, veto=0.5)[0, 0].tolist() == [-2.0] * 3  # 12 % < 50 %: vetoed
    assert gate_by_presence(logits, presence, veto=0.01)[0, 0].tolist() == [1.0] * 3  # 12 % > 1 %: kept
    for bad in (0.0, 1.0, -0.1):
        with pytest.raises(InputError, match="probability"):
            vetoed(presence, bad)
    with pytest.raises(InputError, match="probability"):
        predict(build_model(SMALL).eval(), torch.zeros(16, 16, 16), torch.randn(1, 12), presence_veto=1.0)


def test_window_parts_keep_present_queries(net):
    image, q = torch.randn(2, 1, 16, 16, 16), torch.randn(6, 12)
    with torch.no_grad():
        out = net(image, q)
        feats, emb, keep, presence = net.window_parts(image, q)
        rows = net.mask_logits_from(feats, emb)
        all_feats, all_emb, all_keep, _ = net.window_parts(image, q, gate=False)
        all_rows = net.mask_logits_from(all_feats, all_emb)
    present = (~vetoed(out.presence)).any(0)
    assert vetoed(out.presence).any() and (~vetoed(out.presence)).any()  # both branches exercised
    assert keep.tolist() == torch.nonzero(present).flatten().tolist()
    torch.testing.assert_close(presence, out.presence)
    torch.testing.assert_close(rows, out.logits[:, keep], atol=1e-5, rtol=1e-5)
    assert all_keep.tolist() == list(range(6))
    torch.testing.assert_close(all_rows, out.logits, atol=1e-5, rtol=1e-5)


def test_predict_lean_path_equals_plain(net):
    image, q = torch.randn(1, 1, 26, 20, 18), torch.randn(4, 12)
    plain = predict(net, image, q, lean=False)
    lean = predict(net, image, q, lean=True)
    torch.testing.assert_close(lean, plain, atol=1e-4, rtol=1e-4)


def test_absent_structure_gives_empty_mask():
    torch.manual_seed(1)
    model = build_model(SMALL).eval()
    last = model.presence_head[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.fill_(-5.0)  # every query judged absent from every window
    image, q = torch.randn(24, 24, 24), torch.randn(2, 12)
    logits = predict(model, image, q)
    assert (logits <= -5.0 + 1e-4).all()
    assert not (torch.sigmoid(logits) > 0.5).any()
    with torch.no_grad():
        last.bias.fill_(5.0)  # present everywhere: gating changes nothing
    torch.testing.assert_close(predict(model, image, q), predict(model, image, q, presence_gating=False))


def test_sw_batch_size_follows_memory_budget():
    cfg = SMALL
    per = window_memory_bytes(cfg, 10)
    assert sw_batch_size_for(cfg, 10, memory_gb=per * 3.5 / 2**30) == 3
    assert sw_batch_size_for(cfg, 10, memory_gb=1e-9) == 1
    assert window_memory_bytes(cfg, 100) > per


def test_windows_a_query_is_vetoed_in_give_its_presence_logit(net):
    """Windows side by side (no overlap): each voxel holds its window's gated logits."""
    torch.manual_seed(3)
    image, q = torch.randn(1, 1, 48, 16, 16), torch.randn(8, 12)
    with torch.no_grad():
        outs = [net(image[..., i:i + 16, :, :], q) for i in (0, 16, 32)]
    presence = torch.cat([o.presence for o in outs])
    mixed = ((~vetoed(presence)).any(0) & vetoed(presence).any(0)).nonzero().flatten()
    assert len(mixed), "the fixture should hold a query judged present in some windows only"
    got = predict(net, image, q, overlap=0.0, sw_batch_size=3)
    want = torch.cat([gate_by_presence(o.logits, o.presence)[0] for o in outs], dim=1)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    for w, o in enumerate(outs):
        for k in vetoed(o.presence[0]).nonzero().flatten().tolist():
            torch.testing.assert_close(got[k, 16 * w:16 * (w + 1)], o.presence[0, k].expand(16, 16, 16))


def test_official_blend_averages_probabilities(net):
    image, q = torch.randn(1, 1, 16, 16, 16), torch.randn(2, 12)
    with torch.no_grad():
        out = net(image, q)
    got = predict(net, image, q, official_blend=True)  # one window: the average is its own probability
    torch.testing.assert_close(got.sigmoid(), out.logits[0].sigmoid(), atol=1e-5, rtol=1e-4)


def test_cpu_window_batches_are_capped(net, monkeypatch):
    import sat.model.inference as inference

    seen = []
    real = inference.sliding_window_inference

    def spy(inputs, roi, sw_batch_size, *args, **kwargs):
        seen.append(sw_batch_size)
        return real(inputs, roi, sw_batch_size, *args, **kwargs)

    monkeypatch.setattr(inference, "sliding_window_inference", spy)
    predict(net, torch.randn(40, 40, 40), torch.randn(1, 12), overlap=0.5, memory_gb=64.0)
    assert seen == [inference.CPU_MAX_WINDOWS]
    predict(net, torch.randn(40, 40, 40), torch.randn(1, 12), sw_batch_size=9)
    assert seen[-1] == 9


def test_many_prompt_outputs_default_to_float16(net, monkeypatch):
    import sat.model.inference as inference

    monkeypatch.setattr(inference, "_FP16_OUTPUT_BYTES", 4 * 2 * 16**3 - 1)  # just below 2 float32 maps
    image, q = torch.randn(16, 16, 16), torch.randn(2, 12)
    assert predict(net, image, q[:1]).dtype == torch.float32
    half = predict(net, image, q)
    assert half.dtype == torch.float16
    torch.testing.assert_close(half.float(), predict(net, image, q, accumulate_dtype=torch.float32),
                               atol=2e-2, rtol=2e-2)
