"""LightningModule for knowledge-enhanced contrastive pretraining of the text encoder."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch

from sat.text.encoder import TextEncoder

logger = logging.getLogger(__name__)


def multi_positive_infonce(z: torch.Tensor, labels: torch.Tensor, *, temperature: float) -> torch.Tensor:
    """Multi-positive InfoNCE (supervised-contrastive) loss with in-batch negatives.

    z: [B, D] unit embeddings; labels: [B] int64, equal labels = positives.
    Every anchor averages -log p(positive) over its positives, where p is the
    softmax over all other items of the batch; anchors without positives are skipped.

    >>> z = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1)
    >>> float(multi_positive_infonce(z, torch.tensor([0, 0, 1, 1]), temperature=0.1)) > 0
    True
    """
    logits = z @ z.T / temperature
    self_mask = torch.eye(len(z), dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    positives = (labels[:, None] == labels[None, :]) & ~self_mask
    count = positives.sum(1)
    has = count > 0
    per_anchor = -(log_prob.masked_fill(~positives, 0.0)).sum(1)[has] / count[has]
    return per_anchor.mean()


def recall_at(names: torch.Tensor, queries: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    """Fraction of queries [Q,D] whose true concept (labels [Q] into names [C,D]) is among the k nearest names."""
    top = (queries @ names.T).topk(min(k, len(names)), dim=1).indices
    return float((top == labels[:, None]).any(1).float().mean())


class ContrastiveTextModule(L.LightningModule):
    """Fine-tunes the top layer(s), projection, modality and side vectors of a :class:`TextEncoder`.

    Batches come from :class:`sat.text.data.ConceptBatches` (cached frozen-layer
    states), so a step runs only the tuned layers. Checkpoints keep only the
    trainable (delta) tensors plus the optimizer state.

    Example:
        >>> module = ContrastiveTextModule(max_steps=100)          # doctest: +SKIP
        >>> lightning.Trainer(max_steps=100).fit(module, loader)    # doctest: +SKIP
    """

    def __init__(
        self,
        *,
        base: str | None = None,
        tuned_layers: int = 1,
        dim: int | None = None,
        max_length: int = 32,
        lr: float = 2e-4,
        head_lr: float = 1e-3,
        weight_decay: float = 0.01,
        temperature: float = 0.05,
        warmup_steps: int = 50,
        max_steps: int = 1000,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.encoder = TextEncoder(base, tuned_layers=tuned_layers, dim=dim, max_length=max_length)
        for layer in self.encoder.bert.encoder.layer[self.encoder.split :]:
            layer.requires_grad_(True)
        self.strict_loading = False  # checkpoints hold only the delta
        self.train()  # the encoder is built in eval mode; Lightning toggles modes from here

    def _trainable_keys(self) -> set[str]:
        return {f"encoder.{k}" for k in self.encoder.delta_keys()}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        keys = self._trainable_keys()
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in keys}

    def on_train_epoch_start(self) -> None:
        dataset = getattr(self.trainer.train_dataloader, "dataset", None)
        if dataset is not None and hasattr(dataset, "epoch"):
            dataset.epoch = self.current_epoch

    def on_train_start(self) -> None:
        self._started = time.perf_counter()

    def on_train_epoch_end(self) -> None:
        loss = self.trainer.callback_metrics.get("train/loss")
        recall = self.trainer.callback_metrics.get("val/recall@1")
        logger.info(
            "epoch %d, step %d: loss %.3f, held-out recall@1 %s, %.0f s",
            self.current_epoch, self.global_step, float("nan") if loss is None else float(loss),
            "-" if recall is None else f"{float(recall):.3f}", time.perf_counter() - getattr(self, "_started", 0.0),
        )

    def _embed(self, batch: dict[str, torch.Tensor], *, chunk: int = 64) -> torch.Tensor:
        """Embeddings [B, D] of a cached batch, run in length-sorted chunks to skip most padding."""
        lengths = batch["mask"].sum(1)
        order = lengths.argsort()
        pieces = []
        for idx in order.split(chunk):
            t = int(lengths[idx].max())
            pieces.append(
                self.encoder.top(
                    batch["hidden"][idx, :t], batch["mask"][idx, :t], side=batch["side"][idx], modality=batch["modality"][idx]
                )
            )
        return torch.cat(pieces)[order.argsort()]

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = multi_positive_infonce(self._embed(batch), batch["labels"], temperature=self.hparams.temperature)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["labels"]))
        return loss

    def validation_step(self, batch: dict[str, dict[str, torch.Tensor]], batch_idx: int) -> None:
        names, queries = self._embed(batch["names"]), self._embed(batch["queries"])
        labels = batch["queries"]["labels"]
        for k in (1, 5):
            self.log(f"val/recall@{k}", recall_at(names, queries, labels, k), prog_bar=k == 1, batch_size=1)

    def configure_optimizers(self) -> dict[str, Any]:
        layers = [p for n, p in self.encoder.named_parameters() if p.requires_grad and n.startswith("bert.")]
        heads = [p for n, p in self.encoder.named_parameters() if p.requires_grad and not n.startswith("bert.")]
        optimizer = torch.optim.AdamW(
            [{"params": layers, "lr": self.hparams.lr}, {"params": heads, "lr": self.hparams.head_lr}],
            weight_decay=self.hparams.weight_decay,
        )
        warmup, total = self.hparams.warmup_steps, max(self.hparams.max_steps, 1)

        def schedule(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def load_delta_from_checkpoint(self, path: str | Path) -> None:
        """Copy the delta tensors of a Lightning checkpoint into this module (weights_only load)."""
        from sat.text.delta import state_to_encoder

        state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
        state_to_encoder(self.encoder, {k.removeprefix("encoder."): v for k, v in state.items()})
