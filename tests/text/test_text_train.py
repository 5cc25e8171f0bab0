"""Training: recipe loading, a few steps on the tiny tree, resume from the checkpoint, export."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sat.errors import ConfigError, InputError
from sat.text import load_encoder
from sat.text.train import load_recipe, train_text_encoder

RECIPE = Path(__file__).resolve().parents[2] / "train" / "text.yaml"


def test_shipped_recipe_is_valid():
    from sat.text.delta import read_config, resource_dir

    recipe = load_recipe(RECIPE)
    shipped = read_config(resource_dir("default"))
    assert recipe["holdout_fraction"] == 0.15 == shipped["training"]["holdout_fraction"]
    assert recipe["tuned_layers"] == shipped["tuned_layers"]  # the shipped delta came from this recipe
    assert recipe["max_steps"] == shipped["training"]["trained_steps"]


@pytest.mark.parametrize(("content", "match"), [("max_steps: [", "not valid YAML"), ("- 1\n", "mapping"), ("epochs: 3\n", "unknown keys")])
def test_bad_recipes(tmp_path, content, match):
    path = tmp_path / "r.yaml"
    path.write_text(content)
    with pytest.raises(ConfigError, match=match):
        load_recipe(path)
    with pytest.raises(ConfigError, match="not found"):
        load_recipe(tmp_path / "missing.yaml")


def test_resume_without_checkpoint_fails(tmp_path, tiny_tree):
    with pytest.raises(InputError, match="cannot resume"):
        train_text_encoder(out_dir=tmp_path, tree=tiny_tree, resume=True)
    with pytest.raises(InputError, match="KnowledgeTree"):
        train_text_encoder(out_dir=tmp_path, tree={})


@pytest.mark.slow
def test_train_resume_and_export(tmp_path, tiny_tree):
    common = {"tree": tiny_tree, "steps_per_epoch": 2, "concepts_per_batch": 8, "val_every_n_epochs": 2, "progress": False}
    first = train_text_encoder(out_dir=tmp_path, max_steps=4, **common)
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 4
    assert all(k.startswith("encoder.") for k in ckpt["state_dict"]) and len(ckpt["state_dict"]) == 20  # delta only
    before = load_encoder(first).encode(["left kidney"])

    export = tmp_path / "shipped"
    delta = train_text_encoder(out_dir=tmp_path, max_steps=6, resume=True, export_to=export, **common)
    encoder = load_encoder(delta)
    assert encoder.metadata["training"]["trained_steps"] == 6  # continued, not restarted
    assert encoder.metadata["training"]["held_out_synonyms"] > 0
    assert not torch.equal(before, encoder.encode(["left kidney"]))
    assert torch.equal(load_encoder(export).encode(["L3", "kidney"]), encoder.encode(["L3", "kidney"]))
