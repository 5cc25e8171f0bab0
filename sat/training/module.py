"""Stage 2 of SAT: segmentation training with precomputed (frozen) text queries.

The network is passed in (built by :func:`sat.model.build_model` or from a recipe), never
built here; the text encoder never runs in the training step: batches carry the query
embeddings (see :class:`sat.data.module.SATDataModule`).

Example:
    >>> from sat.model import build_model
    >>> from sat.training.module import SATSegmentation
    >>> module = SATSegmentation(build_model("sat-tiny"), lr=1e-3)
    >>> module.hparams.net_config["preset"]
    'sat-tiny'
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import lightning as L
import torch
from torch import nn

from sat.errors import ConfigError
from sat.model.config import WEIGHT_FREE
from sat.training.losses import SegmentationLoss

__all__ = ["SATSegmentation", "dice_scores"]

log = logging.getLogger(__name__)


def dice_scores(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Dice of each channel of two boolean [N, ...] tensors -> [N] (1.0 when both are empty)."""
    pred, target = pred.flatten(1).bool(), target.flatten(1).bool()
    inter = (pred & target).sum(1).double()
    total = pred.sum(1).double() + target.sum(1).double()
    return torch.where(total > 0, 2 * inter / total.clamp_min(1), torch.ones_like(total)).float()


def _initialise(net: nn.Module, name_or_dir: str, net_config: dict | None) -> None:
    """Copy the weights of a saved model into ``net`` (ConfigError when the architectures differ).

    A saved model with narrower levels is widened into ``net`` (:func:`sat.model.widen.widen_into`).
    """
    from sat.api import model_dir
    from sat.model import load_pretrained
    from sat.model.widen import can_widen, widen_into

    source, config = load_pretrained(model_dir(name_or_dir))
    saved = source.config.to_dict()  # defaults filled in for fields older configs do not list
    if net_config is not None and can_widen(saved, {**saved, **net_config}):
        widen_into(net, source.float())
        log.info("network initialised from %s, widened %s -> %s", name_or_dir, saved["widths"], net_config["widths"])
        return
    differ = sorted(k for k in net_config or {} if k not in WEIGHT_FREE and saved.get(k) != net_config[k])
    if differ:
        raise ConfigError(f"init_from {name_or_dir!r} has another architecture (differs in {differ}); "
                          "use the same model config as the saved model")
    net.load_state_dict({k: v.float() for k, v in source.state_dict().items()}, strict=True)
    log.info("network initialised from %s", name_or_dir)


def with_schedule(module: L.LightningModule, opt: torch.optim.Optimizer) -> dict:
    """``opt`` with linear warm-up (``hparams.warmup_steps``) then cosine decay to ``lr * min_lr_ratio``
    at the trainer's last step, stepped per batch (Lightning's optimizer dict)."""
    h = module.hparams
    total = max(1, int(module.trainer.estimated_stepping_batches)) if module._trainer is not None else 1000
    warm = min(h.warmup_steps, max(0, total - 1))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / (warm + 1)
        progress = min(1.0, (step - warm) / max(1, total - warm))
        return h.min_lr_ratio + (1 - h.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


class SATSegmentation(L.LightningModule):
    """LightningModule training a :class:`~sat.model.SATNet` on query/patch batches.

    Args:
        net: the segmentation network (``forward(image, queries, query_mask=...) -> SATOutput``).
        lr, weight_decay: AdamW settings.
        warmup_steps: linear warm-up, then cosine decay to ``lr * min_lr_ratio`` at the last step.
        dice_weight, bce_weight, presence_weight, aux_weights: loss weights (see SegmentationLoss).
        seed: torch RNG is reseeded from ``seed`` and the global step at every epoch start (exact resume).
        val_overlap: sliding-window overlap for validation volumes.
        channels_last: train in the channels-last 3D memory layout (several times faster 3D
            convolution backward passes on CPU; the saved weights are the same).
        init_from: a saved model folder or shipped model name (safetensors + config.json) whose
            weights initialise ``net`` (fine-tuning); the configs must match except in
            ``WEIGHT_FREE`` fields (``patch_size``: fine-tune with larger windows).
    """

    def __init__(
        self,
        net: nn.Module,
        *,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        warmup_steps: int = 50,
        min_lr_ratio: float = 0.02,
        dice_weight: float = 1.0,
        bce_weight: float = 1.0,
        presence_weight: float = 0.2,
        aux_weights: Sequence[float] = (0.5, 0.25),
        seed: int = 0,
        val_overlap: float = 0.25,
        channels_last: bool = True,
        init_from: str | None = None,
    ) -> None:
        super().__init__()
        if lr <= 0 or warmup_steps < 0 or not 0 <= min_lr_ratio <= 1:
            raise ConfigError("need lr > 0, warmup_steps >= 0 and min_lr_ratio in [0, 1]")
        self.net = net
        config = getattr(net, "config", None)
        net_config = config.to_dict() if hasattr(config, "to_dict") else None
        if init_from is not None:
            _initialise(net, init_from, net_config)
        self.save_hyperparameters(ignore=["net"])
        self.hparams["net_config"] = net_config
        self.loss = SegmentationLoss(
            dice_weight=dice_weight, bce_weight=bce_weight, presence_weight=presence_weight, aux_weights=aux_weights
        )

    def forward(self, image: torch.Tensor, queries: torch.Tensor, query_mask: torch.Tensor | None = None):
        """SATOutput of the network (see :meth:`sat.model.SATNet.forward`)."""
        return self.net(image, queries, query_mask=query_mask)

    def on_fit_start(self) -> None:
        if self.hparams.channels_last:
            self.net.to(memory_format=torch.channels_last_3d)

    def on_train_epoch_start(self) -> None:
        # a function of the global step, not of Lightning's epoch counters (exact after a resume)
        torch.manual_seed(self.hparams.seed * 100_003 + self.global_step)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        image = batch["image"]
        if self.hparams.channels_last:
            image = image.contiguous(memory_format=torch.channels_last_3d)
        out = self.net(image, batch["queries"], query_mask=batch["query_mask"])
        loss, parts = self.loss(out, batch)
        bs = batch["image"].shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=bs)
        self.log_dict({f"train/{k}": v for k, v in parts.items()}, batch_size=bs)
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        from sat.model import predict

        if not batch["concepts"]:
            return
        logits = predict(self.net, batch["image"][None], batch["queries"], overlap=self.hparams.val_overlap)
        scores = dice_scores(logits > 0, batch["target"])
        for concept, score in zip(batch["concepts"], scores.tolist(), strict=True):
            self.log(f"val_dice/{concept}", score, batch_size=1, sync_dist=True)
        self.log("val/dice", scores.mean(), prog_bar=True, batch_size=1, sync_dist=True)

    def configure_optimizers(self):
        h = self.hparams
        decay, no_decay = [], []
        for name, p in self.net.named_parameters():
            if p.requires_grad:
                (no_decay if p.ndim <= 1 or name.endswith(".bias") else decay).append(p)
        opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": h.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=h.lr
        )
        return with_schedule(self, opt)
