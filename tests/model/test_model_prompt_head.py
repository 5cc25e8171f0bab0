"""The prompt head: guidance maps, its starting point, weights I/O, and one training step."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sat.errors import WeightsError
from sat.model import build_model
from sat.model.prompt_head import (
    PromptHead,
    guidance_maps,
    load_head,
    network_parts,
    prompted_forward,
    save_head,
)


def test_guidance_maps_mark_clicks_and_the_box_in_window_coordinates():
    maps = guidance_maps((10, 10, 10), points=[(12.0, 13.0, 14.0, 1), (25.0, 25.0, 25.0, 0)],
                         box=(11, 11, 11, 13, 14, 30), offset=(10, 10, 10))
    assert maps.shape == (3, 10, 10, 10)
    assert maps[0, 2, 3, 4] == pytest.approx(1.0) and maps[0].argmax() == np.ravel_multi_index((2, 3, 4), (10,) * 3)
    assert maps[1].max() == 0  # the negative click's ball (3 sigma) does not reach this window
    assert maps[2, 1:4, 1:5, 1:].all() and maps[2].sum() == 3 * 4 * 9


def test_an_untrained_head_reproduces_the_automatic_mask_and_zero_without_text():
    torch.manual_seed(0)
    net = build_model("sat-tiny").eval()
    head = PromptHead.for_network(net.config).eval()
    image, query = torch.randn(2, 1, 32, 32, 32), torch.randn(1, 384)
    guidance = torch.stack([guidance_maps((32, 32, 32), points=[(5, 5, 5, 1)])] * 2)
    logit, _ = network_parts(net, image, query)
    with torch.no_grad():
        out = prompted_forward(net, head, image, query, guidance, has_text=torch.tensor([True, False]))
    assert torch.allclose(out[0], logit[0].clamp(-4, 4)) and torch.equal(out[0] > 0, logit[0] > 0)
    assert torch.count_nonzero(out[1]) == 0


def test_head_weights_round_trip_and_corrupt_ones_are_refused(tmp_path):
    torch.manual_seed(0)
    head = PromptHead.for_network(build_model("sat-tiny").config, features=(8, 8, 8, 8, 8, 8))
    torch.nn.init.normal_(head.unet.final_conv.weight)
    folder = save_head(head, tmp_path / "h", half=False, extra={"base": "sat-tiny"})
    loaded, config = load_head(folder)
    assert config["base"] == "sat-tiny" and loaded.config == head.config
    assert all(torch.equal(a, b) for a, b in zip(head.state_dict().values(), loaded.state_dict().values(), strict=True))
    (folder / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(WeightsError, match="re-export"):
        load_head(folder)


def test_one_training_step_of_the_head_changes_only_the_head(tmp_path, tiny_model):
    from sat.training.prompted import MODES, PromptTraining, simulate

    folder = tiny_model(tmp_path / "m", ["liver"])
    module = PromptTraining(base=str(folder), features=(8, 8, 8, 8, 8, 8), lr=0.01)
    target = torch.zeros(2, 2, 32, 32, 32, dtype=torch.uint8)
    target[:, 0, 8:20, 8:20, 8:20] = 1
    batch = {"image": torch.randn(2, 1, 32, 32, 32), "queries": torch.randn(2, 2, 384), "target": target,
             "query_mask": torch.tensor([[True, True], [True, False]])}
    before = {k: v.clone() for k, v in module.net.state_dict().items()}
    loss = module.training_step(batch, 0)
    loss.backward()
    assert module.head.unet.final_conv.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in module.net.parameters())
    assert all(torch.equal(before[k], v) for k, v in module.net.state_dict().items())
    rng = np.random.default_rng(0)
    ref = target[0, 0].bool().numpy()
    for mode in MODES:  # every simulated user says something about the reference
        has_text, clicks, box = simulate(mode, ref, np.zeros_like(ref), rng)
        assert clicks or box is not None
        assert all(ref[c[:3]] == bool(c[3]) for c in clicks)


def test_iterative_users_click_at_the_heads_own_errors(tmp_path, tiny_model, monkeypatch):
    """With ``iterative`` rounds the head is run without gradients between clicks, and the next click
    lies in an error of that run's result."""
    import sat.training.prompted as prompted

    folder = tiny_model(tmp_path / "m", ["liver"])
    module = prompted.PromptTraining(base=str(folder), features=(8, 8, 8, 8, 8, 8), modes={"correct": 1.0},
                                     iterative=3, p_errors=0.5, p_missed=0.3)
    target = torch.zeros(2, 1, 32, 32, 32, dtype=torch.uint8)
    target[:, 0, 8:20, 8:20, 8:20] = 1
    batch = {"image": torch.randn(2, 1, 32, 32, 32), "queries": torch.randn(2, 1, 384), "target": target,
             "query_mask": torch.ones(2, 1, dtype=torch.bool)}
    seen, real = [], prompted.error_click

    def spy(pred, reference, **kwargs):
        click = real(pred, reference, **kwargs)
        seen.append(click)
        assert click is None or pred[click[:3]] != reference[click[:3]]  # in an error of the head's result
        return click

    monkeypatch.setattr(prompted, "error_click", spy)
    for seed in range(6):
        module.hparams.seed = seed
        loss = module.training_step(batch, 0)
        assert torch.isfinite(loss)
    assert seen, "some simulated user should have clicked after seeing the head's result"


def test_simulated_errors_are_confident_balls_on_the_reference_border():
    """A simulated error is a leak outside the reference or a cut inside it, on its border, and it
    changes the automatic mask (so the simulated user's clicks go to it)."""
    from sat.training.prompted import simulated_error

    ref = np.zeros((32, 32, 32), bool)
    ref[8:24, 8:24, 8:24] = True
    logit = torch.where(torch.from_numpy(ref), 6.0, -6.0)
    kinds = set()
    for seed in range(12):
        out = simulated_error(logit, ref, np.random.default_rng(seed))
        changed = (out > 0).numpy() != ref
        assert changed.any() and changed.sum() < ref.sum()
        leak, cut = changed & ~ref, changed & ref
        assert not (leak.any() and cut.any())
        kinds.add("leak" if leak.any() else "cut")
        assert torch.all(out[torch.from_numpy(changed)].abs() >= 2.0)
    assert kinds == {"leak", "cut"}
    assert torch.equal(simulated_error(logit, np.zeros_like(ref), np.random.default_rng(0)), logit)


def test_a_simulated_miss_leaves_no_shape_and_no_mask_to_read():
    """A structure missed outright: the logits say "absent" everywhere, with the same confidence, so
    the head cannot read the reference's shape from them and the clicks start from an empty mask."""
    from sat.training.prompted import simulated_miss

    logit = torch.randn(16, 16, 16) * 5
    for seed in range(5):
        out = simulated_miss(logit, np.random.default_rng(seed))
        assert out.shape == logit.shape and out.dtype == logit.dtype
        assert torch.all(out == out.flatten()[0]) and -12.0 <= float(out.flatten()[0]) <= -6.0
