"""SATNet: U-Net image encoder/decoder + text-query decoder + mask generator.

Example:
    >>> import torch
    >>> from sat.model import build_model
    >>> net = build_model("sat-tiny").eval()
    >>> out = net(torch.zeros(1, 1, 32, 32, 32), torch.randn(3, 384))
    >>> out.logits.shape, out.presence.shape
    (torch.Size([1, 3, 32, 32, 32]), torch.Size([1, 3]))
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from sat._defaults import PRESENCE_VETO
from sat.errors import InputError
from sat.model.config import ModelConfig, get_config
from sat.model.decoder import QueryDecoder, VisualTokens, mlp
from sat.model.unet import UNet3D

__all__ = ["SATNet", "SATOutput", "build_model", "count_parameters", "estimate_flops", "VETO", "veto_logit", "vetoed",
           "kept_queries"]

# Presence gating vetoes a query in a window only when the presence head is confident it is
# absent there: presence probability below VETO.
VETO = PRESENCE_VETO


def veto_logit(veto: float) -> float:
    """The presence logit of probability ``veto``; raises InputError unless ``veto`` is in (0, 1)."""
    if not 0.0 < float(veto) < 1.0:
        raise InputError(f"presence_veto must be a probability in (0, 1), got {veto}")
    return math.log(veto / (1.0 - veto))


def vetoed(presence: torch.Tensor, veto: float = VETO) -> torch.Tensor:
    """Bool tensor, same shape as the presence logits: True where the window vetoes the query
    (presence probability below ``veto``)."""
    return presence < veto_logit(veto)


def kept_queries(presence: torch.Tensor, *, gate: bool, veto: float = VETO) -> torch.Tensor:
    """Indices [K] of the queries some window of the batch does not veto (all of them without ``gate``).

    ``presence``: [B, N] presence logits.
    """
    if not gate:
        return torch.arange(presence.shape[1], device=presence.device)
    return torch.nonzero((~vetoed(presence, veto)).any(0)).flatten()


@dataclass
class SATOutput:
    """What :meth:`SATNet.forward` returns.

    Attributes:
        logits: [B, N, X, Y, Z] float32 mask logits, one map per query.
        presence: [B, N] float32 logits that the queried structure is inside the window.
        aux: deep-supervision logits [B, N, X/2**k, Y/2**k, Z/2**k], k = 1, 2, ... (training only,
            or when ``forward(..., return_aux=True)``).
    """

    logits: torch.Tensor
    presence: torch.Tensor
    aux: list[torch.Tensor] = field(default_factory=list)


class SATNet(nn.Module):
    """Text-prompted 3D segmentation network (see :class:`~sat.model.config.ModelConfig`)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.backbone = UNet3D(c.in_channels, c.widths, c.depths, c.decoder_depths, negative_slope=c.negative_slope,
                               upsample_bias=c.upsample_bias)
        self.tokens = VisualTokens(c.widths[-c.token_levels:], c.query_dim, hidden=c.token_hidden, norm=c.token_norm,
                                   final_gelu=c.head_activation)
        self.query_proj = mlp(c.text_dim, c.query_dim, c.query_dim) if c.query_projection else nn.Identity()
        self.query_decoder = QueryDecoder(
            c.query_dim, layers=c.decoder_layers, heads=c.heads, ffn_dim=c.ffn_dim,
            self_attention=c.query_self_attention, activation=c.ffn_activation,
        )
        self.presence_head = mlp(c.query_dim, c.mask_hidden, 1) if c.presence_head else None
        # mask_heads[k] maps a decoded query to the channels of decoder level k (0 = full resolution)
        self.mask_heads = nn.ModuleList(
            mlp(c.query_dim, c.mask_hidden, c.widths[k], final_gelu=c.head_activation)
            for k in range(1 + c.deep_supervision)
        )

    # -- pieces (also used by the memory-lean inference path) -------------------------------
    def check_image(self, image: torch.Tensor) -> None:
        """Raise :class:`InputError` unless image is [B, C, X, Y, Z] with sizes divisible by the stride."""
        c = self.config
        if image.ndim != 5 or image.shape[1] != c.in_channels:
            raise InputError(
                f"image must be [B, {c.in_channels}, X, Y, Z], got {tuple(image.shape)}; add batch/channel axes"
            )
        if any(s % c.divisor for s in image.shape[2:]):
            raise InputError(
                f"image size {tuple(image.shape[2:])} is not divisible by {c.divisor}; pad it or use predict()"
            )

    def embed_queries(self, queries: torch.Tensor, batch: int) -> torch.Tensor:
        """[N, Dt] or [B, N, Dt] text embeddings -> [B, N, query_dim]."""
        if queries.ndim == 2:
            queries = queries.unsqueeze(0).expand(batch, -1, -1)
        if queries.ndim != 3 or queries.shape[0] != batch or queries.shape[-1] != self.config.text_dim:
            raise InputError(
                f"queries must be [N, {self.config.text_dim}] or [{batch}, N, {self.config.text_dim}], "
                f"got {tuple(queries.shape)}; encode prompts with the model's text encoder"
            )
        return self.query_proj(queries.to(self.backbone.encoder[0][0].conv.weight.dtype))

    def decode_queries(
        self, skips: list[torch.Tensor], queries: torch.Tensor, query_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Visual tokens from the encoder skips + query decoder.

        Returns:
            (decoded queries [B, N, query_dim], presence logits [B, N]).
        """
        memory, pos = self.tokens(skips)
        q = self.embed_queries(queries, memory.shape[0])
        pad = None
        if query_mask is not None and self.config.query_self_attention:
            pad = ~query_mask.bool()
            pad = pad & ~pad.all(dim=1, keepdim=True)  # a fully padded row would give NaN
        q = self.query_decoder(q, memory, pos, pad)
        if self.presence_head is None:  # no presence head: every query is present everywhere
            return q, torch.full(q.shape[:2], math.inf, dtype=q.dtype, device=q.device)
        return q, self.presence_head(q).squeeze(-1)

    def mask_logits(self, features: torch.Tensor, q: torch.Tensor, level: int = 0) -> torch.Tensor:
        """Dot product of per-voxel features [B, C, ...] with the level's query embeddings -> [B, N, ...]."""
        return self.mask_logits_from(features, self.mask_heads[level](q))

    @staticmethod
    def mask_logits_from(features: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """features [B, C, X, Y, Z] . embeddings [B, N, C] -> [B, N, X, Y, Z]."""
        flat = features.flatten(2) if features.is_contiguous() else features.permute(0, 2, 3, 4, 1).flatten(1, 3).transpose(1, 2)
        return torch.bmm(emb, flat).view(emb.shape[0], emb.shape[1], *features.shape[2:])

    def prepare_mask(
        self, q: torch.Tensor, presence: torch.Tensor, spatial, *, gate: bool, veto: float = VETO
    ) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
        """Set up the full-resolution mask product, optionally with presence gating.

        Gating rule: a query the window vetoes (presence probability below ``veto``, :func:`vetoed`)
        gets its presence logit as the logit of every voxel of the window (the window votes
        "absent" everywhere) and its dot product is skipped.

        Returns:
            (per batch item: mask embeddings [n_active, C]; per batch item: active query indices;
            logits [B, N, *spatial] with the gated entries already filled).
        """
        b, n = presence.shape
        logits = torch.empty((b, n, *spatial), dtype=q.dtype, device=q.device)
        embs, actives = [], []
        for i in range(b):
            active = kept_queries(presence[i:i + 1], gate=gate, veto=veto)
            if gate:
                absent = torch.nonzero(vetoed(presence[i], veto)).flatten()
                logits[i, absent] = presence[i, absent].view(-1, *([1] * len(spatial)))
            embs.append(self.mask_heads[0](q[i, active]))
            actives.append(active)
        return embs, actives, logits

    def window_parts(
        self, image: torch.Tensor, queries: torch.Tensor, *, gate: bool = True, veto: float = VETO,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Inference forward of a window batch up to the mask product, for the present queries only.

        ``mask_logits_from(feats, emb)`` gives their logits ``[B, K, X, Y, Z]``.

        Args:
            image: [B, 1, X, Y, Z] windows.
            queries: [N, text_dim] text embeddings.
            gate: keep only the queries not vetoed (:func:`vetoed` with ``veto``) in at least one
                window of the batch (the rule of :meth:`prepare_mask`); False keeps all.

        Returns:
            (features [B, C, X, Y, Z] contiguous channels-first, mask embeddings [B, K, C] of the
            kept queries, kept query indices [K], presence logits [B, N]).
        """
        self.check_image(image)
        skips = self.backbone.encode(image)
        q, presence = self.decode_queries(skips, queries)
        feats = self.backbone.decode(skips)[0]
        del skips
        keep = kept_queries(presence, gate=gate, veto=veto)
        return feats.contiguous(), self.mask_heads[0](q[:, keep]), keep, presence

    # -- forward --------------------------------------------------------------------------
    def forward(
        self,
        image: torch.Tensor,
        queries: torch.Tensor,
        *,
        query_mask: torch.Tensor | None = None,
        return_aux: bool | None = None,
    ) -> SATOutput:
        """Segment every query in the image.

        Args:
            image: [B, 1, X, Y, Z] float32, each size divisible by ``config.divisor``.
            queries: [N, text_dim] (shared by the batch) or [B, N, text_dim] text embeddings.
            query_mask: optional [B, N] bool, True for real queries (padding is ignored by
                query self-attention; the loss must also ignore it).
            return_aux: compute deep-supervision maps (default: in training mode only).
        """
        self.check_image(image)
        want_aux = self.training if return_aux is None else return_aux
        skips = self.backbone.encode(image)
        q, presence = self.decode_queries(skips, queries, query_mask)
        decoded = self.backbone.decode(skips)
        del skips
        logits = self.mask_logits(decoded[0], q, 0)
        aux = []
        if want_aux:
            aux = [self.mask_logits(decoded[k], q, k) for k in range(1, 1 + self.config.deep_supervision)]
        return SATOutput(logits=logits, presence=presence, aux=aux)


def build_model(config: str | dict[str, Any] | ModelConfig, *, device: str | torch.device | None = None) -> SATNet:
    """Build a randomly initialised :class:`SATNet` from a preset name, dict or config.

    ``device="meta"`` builds without allocating weights (parameter counting).

    Example:
        >>> build_model("sat-nano", device="meta").config.preset
        'sat-nano'
    """
    cfg = get_config(config)
    if device is None:
        return SATNet(cfg)
    with torch.device(device):
        return SATNet(cfg)


def count_parameters(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of parameters (works on the meta device)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def estimate_flops(config: str | dict[str, Any] | ModelConfig, *, window=None, queries: int = 1) -> float:
    """Approximate multiply-add FLOPs (x2) of one forward pass on one window (convolutions + mask dot).

    Example:
        >>> estimate_flops("sat-tiny", window=(96, 96, 96)) > 1e9
        True
    """
    c = get_config(config)
    shape = tuple(window or c.patch_size)
    vox = [shape[0] * shape[1] * shape[2] / 8**i for i in range(c.levels)]
    flops = 0.0
    cins = (c.in_channels, *c.widths[:-1])
    for i, (cin, w, d) in enumerate(zip(cins, c.widths, c.depths, strict=True)):
        flops += 2 * 27 * vox[i] * (cin * w + (d - 1) * w * w)
    for i, d in enumerate(c.decoder_depths):
        w = c.widths[i]
        flops += 2 * 8 * vox[i + 1] * c.widths[i + 1] * w  # transposed conv
        flops += 2 * 27 * vox[i] * (2 * w * w + (d - 1) * w * w)
    flops += 2 * vox[0] * c.widths[0] * queries
    return flops
