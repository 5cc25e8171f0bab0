"""The original SAT networks: configurations, checkpoint reading and key checks, exactness against the original."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch

import sat
from sat.errors import WeightsError
from sat.model import build_model, count_parameters
from sat.model.config import PRESETS
from sat.model.lean import lean_forward
from sat.model.network import SATNet
from sat.model.official import (
    official_key,
    read_state_dict,
    text_config,
    vision_config,
    vision_state,
)
from tests.official_fixtures import save_vision

# parameters of the original networks without the deep-supervision heads (the authors' counts), minus
# the two extra input channels of the first conv (folded into one) and the unused norm1 of each decoder layer
ORIGINAL = {"sat-official-nano": (109_194_624, 64), "sat-official-pro": (475_561_344, 128)}


@pytest.mark.parametrize("name", sorted(ORIGINAL))
def test_presets_have_the_original_parameter_counts(name):
    total, first = ORIGINAL[name]
    assert count_parameters(build_model(name, device="meta")) == total - 2 * first * 27 - 6 * 2 * 768


def _original_layout(name: str) -> dict[str, torch.Tensor]:
    """A random (meta) state dict in the released layout of a preset, deep-supervision heads included."""
    with torch.device("meta"):
        ours = SATNet(PRESETS[name]).state_dict()
    state = {official_key(k): v for k, v in ours.items()}
    first = "backbone.encoder.stages.0.0.convs.0.conv.weight"
    state[first] = torch.empty(state[first].shape[0], 3, 3, 3, 3, device="meta")
    state["mid_mask_embed_proj.0.0.weight"] = torch.empty(256, 768, device="meta")
    state["transformer_decoder.layers.0.norm1.weight"] = torch.empty(768, device="meta")
    return state


@pytest.mark.parametrize("name", ["sat-official-nano", "sat-official-pro"])
def test_nano_and_pro_are_recognised_from_the_shapes(name):
    state = _original_layout(name)
    config = vision_config(state)
    assert config == PRESETS[name]
    mapped = vision_state(state, config)
    assert mapped["backbone.encoder.0.0.conv.weight"].shape[1] == 1
    with torch.device("meta"):
        assert set(mapped) == set(SATNet(PRESETS[name]).state_dict())


def test_missing_or_mismatched_keys_name_the_first_one():
    state = _original_layout("sat-official-nano")
    config = vision_config(state)
    broken = dict(state)
    del broken["transformer_decoder.layers.3.linear2.bias"]
    with pytest.raises(WeightsError, match=r"lacks module\.transformer_decoder\.layers\.3\.linear2\.bias") as err:
        vision_state(broken, config)
    assert "\n" not in str(err.value)
    broken = dict(state)
    broken["backbone.decoder.transpconvs.0.weight"] = torch.empty(768, 512, 2, 2, 1, device="meta")
    with pytest.raises(WeightsError, match=r"transpconvs\.0\.weight has shape \(768, 512, 2, 2, 1\)"):
        vision_state(broken, config)
    with pytest.raises(WeightsError, match="no U-Net encoder"):
        vision_config({"text_tower.biolord.embeddings.word_embeddings.weight": torch.empty(5, 4)})


def test_reader_accepts_numpy_scalars_and_strips_ddp_names(tmp_path):
    state = {"a.weight": torch.ones(2, 3)}
    path = save_vision(state, tmp_path / "v.pth")
    got = read_state_dict(path)
    assert set(got) == {"a.weight"}
    assert torch.equal(got["a.weight"], torch.ones(2, 3))


class Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_reader_refuses_forbidden_globals_corrupt_and_foreign_files(tmp_path, capsys):
    torch.save({"model_state_dict": {"module.x": torch.zeros(1)}, "hook": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(WeightsError, match=r"needs print to be unpickled, which is not allowed") as err:
        read_state_dict(tmp_path / "evil.pth")
    assert "this must never run" not in capsys.readouterr().out
    assert "\n" not in str(err.value)
    (tmp_path / "bad.pth").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(WeightsError, match="corrupt or not a PyTorch checkpoint"):
        read_state_dict(tmp_path / "bad.pth")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(WeightsError, match="no 'model_state_dict'"):
        read_state_dict(tmp_path / "other.pth")
    with pytest.raises(WeightsError, match="does not exist"):
        read_state_dict(tmp_path / "missing.pth")
    with open(tmp_path / "plain.pkl", "wb") as handle:
        pickle.dump({"model_state_dict": {}}, handle, protocol=2)
    with pytest.raises(WeightsError):
        read_state_dict(tmp_path / "plain.pkl")


def test_text_config_from_the_shapes(official_files):
    state = read_state_dict(official_files["text"])
    cfg = text_config(state)
    assert (cfg["hidden_size"], cfg["num_hidden_layers"], cfg["num_attention_heads"]) == (32, 2, 4)
    assert (cfg["vocab_size"], cfg["max_position_embeddings"], cfg["relative_attention_num_buckets"]) == (101, 514, 32)
    with pytest.raises(WeightsError, match="text-encoder file"):
        text_config(read_state_dict(official_files["vision"]))


def test_imported_model_equals_the_original_forward(imported_tiny, official_files, official_fixture):
    """A CT in RAS at 1x1x3 mm, every voxel > 0 HU, one window: probabilities == the original's sigmoid."""
    model = sat.load_model(imported_tiny, device="cpu")
    prompts = [str(p) for p in official_fixture["prompts"]]  # the original class names
    asked = ["kidney, left" if p == "left kidney" else p for p in prompts]  # any prompt the tree resolves
    seg = model.segment(official_files["ct"], asked, modality="ct", probabilities=True)
    expected = official_fixture["expected"]
    for i, prompt in enumerate(asked):
        prob = seg.probabilities[prompt]
        assert prob.dtype == np.float32 and prob.shape == expected[i].shape
        assert float(np.abs(prob - expected[i]).max()) < 1e-3
        assert np.mean(seg[prompt] != (expected[i] > 0.5)) < 1e-4
    assert seg.meta["overlap"] == 0.5  # the original pipeline's default


def test_lean_forward_of_the_original_configuration(imported_tiny):
    model = sat.load_model(imported_tiny, device="cpu").model
    assert model.config.upsample_bias and model.presence_head is None
    torch.manual_seed(0)
    image, queries = torch.randn(1, 1, 64, 64, 32), torch.randn(2, 32)
    with torch.no_grad():
        full = model(image, queries).logits
    lean = lean_forward(model, image, queries, slab=8).logits
    assert float((full - lean).abs().max()) < 1e-4


def test_imported_folder_config(imported_tiny):
    config = json.loads((imported_tiny / "config.json").read_text())
    assert config["model"]["preset"] == "sat-official-custom"
    assert config["concepts"] == ["kidney_left", "kidney_right", "liver"]
    assert config["vocabulary"]["ct"]["liver"] == "liver" and config["vocabulary"]["mr"] == {"liver": "liver"}
    assert config["inference"]["preprocess"] == "official"
    assert (imported_tiny / "text" / "model.safetensors").is_file()
