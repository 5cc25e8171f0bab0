"""Segmentation losses: Dice + BCE per query, masked for padding, deep supervision, presence BCE.

Partial labels are handled upstream (negatives are only concepts the dataset labels); here
a query contributes to the Dice term only when its structure is in the patch (the Dice of
an empty target is undefined), and to the BCE terms always, unless it is padding.

Example:
    >>> import torch
    >>> from sat.model import SATOutput
    >>> from sat.training.losses import SegmentationLoss
    >>> out = SATOutput(torch.zeros(1, 2, 8, 8, 8), torch.zeros(1, 2), [torch.zeros(1, 2, 4, 4, 4)])
    >>> batch = {"target": torch.ones(1, 2, 8, 8, 8), "presence": torch.ones(1, 2),
    ...          "query_mask": torch.tensor([[True, False]])}
    >>> total, parts = SegmentationLoss()(out, batch)
    >>> sorted(parts)
    ['bce', 'dice', 'presence']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from monai.losses import DiceLoss
from torch import nn

from sat.errors import ConfigError

__all__ = ["SegmentationLoss", "masked_dice_bce"]


def masked_dice_bce(
    logits: torch.Tensor, target: torch.Tensor, query_mask: torch.Tensor, *, dice: DiceLoss
) -> tuple[torch.Tensor, torch.Tensor]:
    """(Dice loss over real queries with a non-empty target, BCE over real queries).

    Args:
        logits, target: [B, N, X, Y, Z] (target in [0, 1], float).
        query_mask: [B, N] bool, False for padding queries.
    """
    valid = query_mask.to(logits.dtype)
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none").flatten(2).mean(-1)
    bce = (bce * valid).sum() / valid.sum().clamp_min(1)
    positive = valid * (target.flatten(2).amax(-1) > 0).to(logits.dtype)
    per_query = dice(logits, target).reshape(positive.shape)
    dice_loss = (per_query * positive).sum() / positive.sum().clamp_min(1)
    return dice_loss, bce


class SegmentationLoss(nn.Module):
    """Weighted Dice + BCE on the main logits and each auxiliary map, plus presence BCE.

    Args:
        dice_weight, bce_weight: weights of the two mask terms.
        presence_weight: weight of the presence-logit BCE (target: structure in the patch).
        aux_weights: weight of each deep-supervision map, finest first (extra maps are ignored).
    """

    def __init__(
        self,
        *,
        dice_weight: float = 1.0,
        bce_weight: float = 1.0,
        presence_weight: float = 0.2,
        aux_weights: Sequence[float] = (0.5, 0.25),
    ) -> None:
        super().__init__()
        if min(dice_weight, bce_weight, presence_weight, *aux_weights, 0.0) < 0:
            raise ConfigError("loss weights must be >= 0")
        self.dice_weight, self.bce_weight, self.presence_weight = dice_weight, bce_weight, presence_weight
        self.aux_weights = tuple(float(w) for w in aux_weights)
        # per (batch, query) soft Dice on sigmoid probabilities
        self.dice = DiceLoss(sigmoid=True, reduction="none", smooth_nr=1e-5, smooth_dr=1e-5)

    def forward(self, output, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Returns (total loss, {"dice", "bce", "presence"} detached parts of the main output)."""
        target = batch["target"].to(output.logits.dtype)
        mask = batch["query_mask"].bool()
        if target.shape != output.logits.shape:
            raise ConfigError(f"target {tuple(target.shape)} does not match logits {tuple(output.logits.shape)}")
        dice, bce = masked_dice_bce(output.logits, target, mask, dice=self.dice)
        total = self.dice_weight * dice + self.bce_weight * bce
        for weight, aux in zip(self.aux_weights, output.aux, strict=False):
            small = F.interpolate(target, size=aux.shape[2:], mode="area")
            d, b = masked_dice_bce(aux, small, mask, dice=self.dice)
            total = total + weight * (self.dice_weight * d + self.bce_weight * b)
        valid = mask.to(output.presence.dtype)
        presence = F.binary_cross_entropy_with_logits(
            output.presence, batch["presence"].to(output.presence.dtype), reduction="none"
        )
        presence = (presence * valid).sum() / valid.sum().clamp_min(1)
        total = total + self.presence_weight * presence
        return total, {"dice": dice.detach(), "bce": bce.detach(), "presence": presence.detach()}
