"""The shipped recipes in train/: valid keys, model configs equal to the presets, DDP settings."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest
import yaml

from sat.data.module import SATDataModule
from sat.model.config import PRESETS, ModelConfig
from sat.training.module import SATSegmentation

TRAIN = Path(__file__).resolve().parents[2] / "train"


def _load(name: str) -> dict:
    return yaml.safe_load((TRAIN / name).read_text())


@pytest.mark.parametrize("name", ["tiny-cpu.yaml", "small-cpu.yaml", "nano.yaml", "pro.yaml", "tiny-zoom-cpu.yaml"])
def test_recipe_sections_use_known_arguments(name):
    recipe = _load(name)
    data_args = set(inspect.signature(SATDataModule.__init__).parameters)
    model_args = set(inspect.signature(SATSegmentation.__init__).parameters)
    assert set(recipe["data"]) <= data_args
    assert set(recipe["model"]) <= model_args
    assert recipe["model"]["net"]["class_path"] == "sat.model.SATNet"
    config = ModelConfig.from_dict(recipe["model"]["net"]["init_args"]["config"])
    assert list(config.patch_size) == recipe["data"]["patch_size"]
    checkpoints = [c for c in recipe["trainer"]["callbacks"] if c["class_path"].endswith("ModelCheckpoint")]
    assert checkpoints and checkpoints[0]["init_args"]["dirpath"] and checkpoints[0]["init_args"]["save_last"]
    assert checkpoints[0]["init_args"]["save_on_train_epoch_end"]  # epoch-aligned: exact resume
    assert checkpoints[0]["init_args"]["save_top_k"] != 0  # Lightning writes no last.ckpt with save_top_k=0


@pytest.mark.parametrize(("name", "preset", "nodes"), [("nano.yaml", "sat-nano", 1), ("pro.yaml", "sat-pro", 4)])
def test_gpu_recipes_are_ddp_bf16_with_preset_networks(name, preset, nodes):
    recipe = _load(name)
    trainer = recipe["trainer"]
    assert trainer["strategy"] == "ddp" and trainer["devices"] == 8 and trainer["num_nodes"] == nodes
    assert trainer["precision"] == "bf16-mixed"
    config = ModelConfig.from_dict(recipe["model"]["net"]["init_args"]["config"])
    assert config == PRESETS[preset]


def test_tiny_cpu_recipe_runs_on_cpu_and_exports_the_shipped_model():
    recipe = _load("tiny-cpu.yaml")
    assert recipe["trainer"]["accelerator"] == "cpu"
    exports = [c for c in recipe["trainer"]["callbacks"] if c["class_path"].endswith("ExportOnEnd")]
    assert exports[0]["init_args"]["directory"] == "runs/sat-tiny/export"  # shipped only once evaluated
    paths = [c["class_path"] for c in recipe["trainer"]["callbacks"]]
    averaging = [i for i, c in enumerate(paths) if c.endswith("WeightAveraging")]
    assert all(i < paths.index(exports[0]["class_path"]) for i in averaging)  # average copied in before export
    assert recipe["data"]["text_encoder"] in ("base", "default")
    config = ModelConfig.from_dict(recipe["model"]["net"]["init_args"]["config"])
    assert config == PRESETS["sat-tiny"]  # the preset, the recipe and the shipped network agree
    shipped = json.loads((TRAIN.parent / "sat/resources/models/sat-tiny/config.json").read_text(encoding="utf-8"))
    assert ModelConfig.from_dict(shipped["model"]) == config


def test_windowed_recipes_record_the_abdominal_window():
    """Recipes that train on windowed sets (BTCV) clip every CT alike, so the export tells inference to."""
    from sat.preprocess import ABDOMEN_WINDOW

    for name in ("tiny-cpu.yaml", "small-cpu.yaml"):
        recipe = _load(name)
        if "btcv_abdomen_24" in recipe["data"]["datasets"]:
            assert tuple(recipe["data"]["ct_window"]) == ABDOMEN_WINDOW, name


def test_prompt_head_recipe_uses_known_arguments_and_the_shipped_data():
    from sat.training.prompted import MODES, PromptTraining

    recipe, tiny = _load("prompts-tiny-cpu.yaml"), _load("tiny-cpu.yaml")
    assert set(recipe["model"]) <= set(inspect.signature(PromptTraining.__init__).parameters)
    assert set(recipe["data"]) <= set(inspect.signature(SATDataModule.__init__).parameters)
    assert set(recipe["model"]["modes"]) == set(MODES) and recipe["model"]["base"] == "sat-tiny"
    for key in ("cache", "datasets", "concepts", "patch_size", "ct_window"):  # the frozen network's data
        assert recipe["data"][key] == tiny["data"][key]


def test_zoom_recipe_fine_tunes_the_shipped_network_on_a_finer_grid():
    recipe, tiny = _load("tiny-zoom-cpu.yaml"), _load("tiny-cpu.yaml")
    zoom_net, tiny_net = (r["model"]["net"]["init_args"]["config"] for r in (recipe, tiny))
    # the zoom weights are the shipped network's, on a finer grid
    same = [k for k in tiny_net if k != "spacing"]
    assert {k: zoom_net[k] for k in same} == {k: tiny_net[k] for k in same}
    assert max(zoom_net["spacing"]) <= 3.0 and min(zoom_net["spacing"]) < min(tiny_net["spacing"])
    assert recipe["model"]["init_from"] == "sat-tiny"  # it starts from the shipped 3 mm network
    assert recipe["data"]["concepts"] == tiny["data"]["concepts"]


def test_window_overlay_changes_only_the_schedule_and_where_runs_go():
    overlay = _load("window-ablation.yaml")
    assert set(overlay) == {"trainer", "model"} and set(overlay["model"]) == {"lr"}
    args = [c.get("init_args", {}) for c in overlay["trainer"]["callbacks"]]
    dirs = [a.get("directory") or a.get("dirpath") for a in args]
    assert all(d.startswith(overlay["trainer"]["default_root_dir"]) for d in dirs if d)
