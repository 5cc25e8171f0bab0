"""`sat train`: argument errors, a tiny recipe run, exact resume after a crash, export."""

from __future__ import annotations

import lightning as L
import pytest
import torch
import yaml
from conftest import write_recipe

from sat.cli import main
from sat.errors import ConfigError
from sat.model import load_pretrained
from sat.training.export import export_checkpoint
from sat.training.run import build_cli, train_segmentation


def test_train_without_stage_prints_help(capsys):
    assert main(["train"]) == 2
    assert "seg" in capsys.readouterr().out


def test_train_seg_errors(tmp_path, toy_cache, capsys):
    assert main(["train", "seg", str(tmp_path / "missing.yaml")]) == 1
    assert "not found" in capsys.readouterr().err
    recipe = write_recipe(tmp_path / "r.yaml", toy_cache, tmp_path / "run")
    assert main(["train", "seg", str(recipe), "trainer.max_steps"]) == 1
    assert "key=value" in capsys.readouterr().err
    assert main(["train", "seg", str(recipe), "--resume", "--set", "trainer.max_steps"]) == 1
    assert "key=value" in capsys.readouterr().err
    assert main(["train", "seg", str(recipe), "--resume"]) == 1
    assert "cannot resume" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="invalid recipe"):
        build_cli(recipe, overrides=["model.no_such_option=3"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("trainer: [1, 2\n")
    with pytest.raises(ConfigError):
        build_cli(bad)


def test_train_text_errors(tmp_path, capsys):
    assert main(["train", "text", str(tmp_path / "missing.yaml")]) == 1
    assert "not found" in capsys.readouterr().err


class _Crash(L.Callback):
    """Simulates the process dying in the middle of epoch 2 (after the epoch-1 checkpoint)."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == 5:
            raise RuntimeError("simulated crash")


def _weights(module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.net.state_dict().items()}


@pytest.mark.slow
def test_killed_run_resumes_exactly(tmp_path, toy_cache, capsys):
    ref = train_segmentation(write_recipe(tmp_path / "ref.yaml", toy_cache, tmp_path / "ref"))
    assert ref.trainer.global_step == 6

    recipe = write_recipe(tmp_path / "run.yaml", toy_cache, tmp_path / "run")
    cli = build_cli(recipe)
    cli.trainer.callbacks.append(_Crash())
    with pytest.raises(RuntimeError, match="simulated crash"):
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    assert cli.trainer.global_step == 5
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()

    export = tmp_path / "export"
    assert main(["train", "seg", str(recipe), "--resume", "--export", str(export)]) == 0
    assert "trained 6 steps" in capsys.readouterr().out
    net, config = load_pretrained(export)
    ref_w = _weights(ref.model)
    for k, v in net.state_dict().items():  # float16 export
        assert torch.allclose(v, ref_w[k], atol=2e-3, rtol=1e-2), k
    resumed = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    for k, v in ref_w.items():  # exact: same samples, same RNG, same optimizer state
        assert torch.equal(resumed[f"net.{k}"], v), k
    assert config["text_encoder"] == "test" and config["concepts"] == ["liver", "spleen"]
    assert config["postprocess"] == {"largest_component": {"liver": 1, "spleen": 1}}  # one piece in every toy case


def test_export_on_end_writes_the_averaged_weights(tmp_path, toy_cache):
    """With EMAWeightAveraging listed before ExportOnEnd, the export is the average, not the last step."""
    recipe = write_recipe(tmp_path / "r.yaml", toy_cache, tmp_path / "run")
    spec = yaml.safe_load(recipe.read_text())
    spec["trainer"]["callbacks"] += [
        {"class_path": "lightning.pytorch.callbacks.EMAWeightAveraging",
         "init_args": {"decay": 0.5, "update_starting_at_step": 2}},
        {"class_path": "sat.training.callbacks.ExportOnEnd",
         "init_args": {"directory": str(tmp_path / "export"), "inference": {"overlap": 0.5}}},
    ]
    recipe.write_text(yaml.safe_dump(spec))
    train_segmentation(recipe)
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    net, config = load_pretrained(tmp_path / "export")
    assert config["postprocess"] == {"largest_component": {"liver": 1, "spleen": 1}}
    assert config["inference"] == {"overlap": 0.5}  # the recipe's inference defaults travel with the weights
    exported = net.state_dict()
    average = {k.removeprefix("net."): v for k, v in ckpt["state_dict"].items()}
    current = {k.removeprefix("net."): v for k, v in ckpt["current_model_state"].items()}
    for k, v in exported.items():  # float16 export
        assert torch.allclose(v, average[k], atol=2e-3, rtol=1e-2), k
    assert any(not torch.allclose(v, current[k], atol=2e-3, rtol=1e-2) for k, v in exported.items())
    last, _ = load_pretrained(export_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt", tmp_path / "last",
                                                concepts=["liver"], text_encoder="test", last_step=True))
    for k, v in last.state_dict().items():
        assert torch.allclose(v, current[k], atol=2e-3, rtol=1e-2), k


def test_train_text_calls_the_text_trainer(tmp_path, monkeypatch, capsys):
    import sat.text.train as text_train

    seen = {}

    def fake(**kwargs):
        seen.update(kwargs)
        return tmp_path / "delta"

    monkeypatch.setattr(text_train, "train_text_encoder", fake)
    monkeypatch.setattr(text_train, "load_recipe", lambda path: {"max_steps": 3})
    recipe = tmp_path / "text.yaml"
    recipe.write_text("max_steps: 3\n")
    assert main(["train", "text", str(recipe), "--out", str(tmp_path / "run"), "--resume",
                 "--export-to", str(tmp_path / "exp")]) == 0
    assert seen == {"out_dir": str(tmp_path / "run"), "resume": True, "max_steps": 3,
                    "export_to": str(tmp_path / "exp")}
    assert "delta" in capsys.readouterr().out


def test_overlay_recipe_merges_over_the_recipe(tmp_path, toy_cache):
    """``config=OVERLAY.yaml`` replaces what the overlay names and keeps the rest of the recipe."""
    recipe = write_recipe(tmp_path / "r.yaml", toy_cache, tmp_path / "run")
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(yaml.safe_dump({"model": {"lr": 3e-4}, "trainer": {"max_steps": 2}}))
    cli = build_cli(recipe, overrides=[f"config={overlay}"])
    base = build_cli(recipe)
    assert cli.model.hparams.lr == pytest.approx(3e-4) and cli.trainer.max_steps == 2
    assert cli.datamodule.hparams.cache == base.datamodule.hparams.cache
