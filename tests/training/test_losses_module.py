"""Losses, the LightningModule, the DataModule over a toy cache, and export."""

from __future__ import annotations

import pytest
import torch
from conftest import CONCEPTS, TEXT_DIM, TINY_NET

from sat.data.module import SATDataModule, build_query_table, load_cases
from sat.errors import ConfigError, InputError, WeightsError
from sat.model import SATOutput, build_model, load_pretrained
from sat.training.export import export_checkpoint, export_model
from sat.training.losses import SegmentationLoss
from sat.training.module import SATSegmentation, dice_scores


def _batch(b=2, n=3, shape=(8, 8, 4)):
    target = torch.zeros(b, n, *shape)
    target[:, 0, 2:6, 2:6, 1:3] = 1
    return {"target": target, "presence": target.flatten(2).amax(-1),
            "query_mask": torch.tensor([[True, True, False]] * b)}


def test_loss_ignores_padding_queries_and_uses_dice_only_on_positives():
    loss = SegmentationLoss(aux_weights=(0.5,))
    batch = _batch()
    logits = torch.randn(2, 3, 8, 8, 4, requires_grad=True)
    out = SATOutput(logits, torch.zeros(2, 3), [torch.randn(2, 3, 4, 4, 2)])
    total, parts = loss(out, batch)
    total.backward()
    assert torch.isfinite(total) and logits.grad[:, 2].abs().sum() == 0  # padding gets no gradient
    changed = SATOutput(logits.detach().clone(), torch.zeros(2, 3), out.aux)
    changed.logits[:, 2] = 100.0
    assert torch.allclose(loss(changed, batch)[0], total.detach())
    # Dice term only sees query 0 (the only non-empty target): perfect logits -> dice ~ 0
    perfect = SATOutput(batch["target"] * 40 - 20, torch.zeros(2, 3), [])
    assert loss(perfect, batch)[1]["dice"] < 1e-3
    assert set(parts) == {"dice", "bce", "presence"}


def test_loss_errors():
    with pytest.raises(ConfigError):
        SegmentationLoss(presence_weight=-1)
    out = SATOutput(torch.zeros(2, 3, 8, 8, 8), torch.zeros(2, 3), [])
    with pytest.raises(ConfigError, match="does not match"):
        SegmentationLoss()(out, _batch())


def test_dice_scores():
    a = torch.zeros(3, 4, 4, 4, dtype=torch.bool)
    b = a.clone()
    a[0, :2] = True
    b[0, :1] = True
    a[1, 0] = True
    assert dice_scores(a, b).tolist() == pytest.approx([2 * 16 / 48, 0.0, 1.0])


def test_datamodule_batches_and_validation_volumes(toy_cache):
    dm = SATDataModule(str(toy_cache), query_cache=str(toy_cache / "queries.safetensors"), text_encoder="test",
                       patch_size=(16, 16, 8), batch_size=2, queries_per_sample=3, steps_per_epoch=2, augment=False)
    dm.setup("fit")
    assert dm.concepts == ["liver", "spleen"] and len(dm.train_cases) == 2 and len(dm.val_cases) == 1
    batches = list(dm.train_dataloader())
    assert len(batches) == 2
    b = batches[0]
    assert b["image"].shape == (2, 1, 16, 16, 8) and b["queries"].shape == (2, 3, TEXT_DIM)
    assert b["target"].shape == (2, 3, 16, 16, 8) and b["query_mask"].shape == (2, 3)
    assert len(set(batches[0]["key"]) | set(batches[1]["key"])) == 4
    v = next(iter(dm.val_dataloader()))
    assert v["concepts"] == ["liver", "spleen"] and v["target"].shape == (2, 40, 36, 24)
    assert v["queries"].shape == (2, TEXT_DIM)


def test_datamodule_filters_and_errors(toy_cache, tmp_path):
    assert len(load_cases(toy_cache, split="val", move_to_val=["toy/case0"])) == 2
    assert load_cases(toy_cache, split="train", exclude=["toy/case0", "toy/case1"]) == []
    with pytest.raises(InputError, match="sat data prepare"):
        load_cases(tmp_path, split="train")
    dm = SATDataModule(str(toy_cache), query_cache=str(toy_cache / "queries.safetensors"), concepts=["liver"])
    dm.setup()
    assert dm.concepts == ["liver"] and all("spleen" not in c.labelled for c in dm.train_cases)
    with pytest.raises(ConfigError, match="no labelled voxels"):
        SATDataModule(str(toy_cache), query_cache=str(toy_cache / "queries.safetensors"),
                      concepts=["aorta"]).setup()
    with pytest.raises(ConfigError, match="no training cases"):
        SATDataModule(str(toy_cache), query_cache=str(toy_cache / "queries.safetensors"),
                      datasets={"other": 1.0}).setup()
    with pytest.raises(ConfigError):
        SATDataModule(str(toy_cache), batch_size=0)


def test_build_query_table_encodes_each_concept_once_per_modality():
    calls = []

    class Encoder:
        def encode(self, texts, *, modality=None):
            calls.append((tuple(texts), modality))
            return torch.arange(len(texts) * 2, dtype=torch.float32).reshape(len(texts), 2)

    table = build_query_table([("ct", "liver"), ("ct", "spleen"), ("mr", "liver")], Encoder(),
                              texts=lambda c: [c, c + " organ"])
    assert len(calls) == 2 and {m for _, m in calls} == {"ct", "mr"}
    assert table.embeddings[("ct", "spleen")].tolist() == [[4.0, 5.0], [6.0, 7.0]]


@pytest.mark.slow
def test_module_steps_reduce_loss(toy_cache):
    torch.manual_seed(0)
    dm = SATDataModule(str(toy_cache), query_cache=str(toy_cache / "queries.safetensors"),
                       patch_size=(16, 16, 8), batch_size=2, queries_per_sample=3, augment=False, p_thin=0.0)
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    module = SATSegmentation(build_model(TINY_NET), lr=0.02)
    opt = torch.optim.Adam(module.parameters(), lr=0.02)
    losses = []
    for _ in range(10):
        loss, _ = module.loss(module(batch["image"], batch["queries"], batch["query_mask"]), batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]
    assert module.hparams.net_config["preset"] == "test-micro"
    with pytest.raises(ConfigError):
        SATSegmentation(build_model(TINY_NET), lr=0)


def test_export_round_trip(tmp_path):
    net = build_model(TINY_NET)
    out = export_model(net, tmp_path / "m", concepts=list(CONCEPTS), text_encoder="base", extra={"training": {}})
    loaded, config = load_pretrained(out)
    assert config["text_encoder"] == "base" and config["concepts"] == sorted(CONCEPTS)
    assert config["weights_dtype"] == "float16" and next(net.parameters()).dtype == torch.float32
    for (k, a), b in zip(net.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert torch.allclose(a, b, atol=2e-3, rtol=1e-2), k
    with pytest.raises(WeightsError):
        export_checkpoint(tmp_path / "none.ckpt", tmp_path / "x", concepts=[], text_encoder="base")
    torch.save({"hyper_parameters": {"net_config": TINY_NET}, "state_dict": {}}, tmp_path / "plain.ckpt")
    with pytest.raises(WeightsError, match="no separate last-step"):
        export_checkpoint(tmp_path / "plain.ckpt", tmp_path / "x", concepts=[], text_encoder="base", last_step=True)


def test_init_from_saved_model_copies_weights_and_checks_architecture(tmp_path):
    torch.manual_seed(0)
    source = export_model(build_model(TINY_NET), tmp_path / "m", concepts=list(CONCEPTS), text_encoder="base")
    saved, _ = load_pretrained(source)
    module = SATSegmentation(build_model(TINY_NET), init_from=str(source))
    for (k, a), b in zip(saved.state_dict().items(), module.net.state_dict().values(), strict=True):
        assert torch.equal(a.float(), b), k
    with pytest.raises(ConfigError, match="another architecture"):
        SATSegmentation(build_model({**TINY_NET, "query_dim": 16}), init_from=str(source))


def test_init_from_allows_a_larger_patch_which_does_not_shape_the_weights(tmp_path):
    torch.manual_seed(0)
    source = export_model(build_model(TINY_NET), tmp_path / "m", concepts=list(CONCEPTS), text_encoder="base")
    patch = [2 * p for p in build_model(TINY_NET).config.patch_size]
    module = SATSegmentation(build_model({**TINY_NET, "patch_size": patch}), init_from=str(source))
    assert list(module.net.config.patch_size) == patch
    saved, _ = load_pretrained(source)
    for (k, a), b in zip(saved.state_dict().items(), module.net.state_dict().values(), strict=True):
        assert torch.equal(a.float(), b), k


def test_init_from_a_narrower_model_widens_it(tmp_path):
    torch.manual_seed(0)
    source = export_model(build_model(TINY_NET), tmp_path / "m", concepts=list(CONCEPTS), text_encoder="base")
    saved, _ = load_pretrained(source)
    widths = [*saved.config.widths[:-1], 2 * saved.config.widths[-1]]
    module = SATSegmentation(build_model({**TINY_NET, "widths": widths}), init_from=str(source))
    x, q = torch.randn(1, 1, *saved.config.patch_size), torch.randn(2, TEXT_DIM)
    assert torch.allclose(module.net.eval()(x, q).logits, saved.float().eval()(x, q).logits, atol=1e-4)
