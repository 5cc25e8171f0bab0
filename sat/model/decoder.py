"""Visual tokens, 3D positional encoding and the transformer query decoder.

Example:
    >>> import torch
    >>> from sat.model.decoder import QueryDecoder, positional_encoding_3d
    >>> positional_encoding_3d((2, 3, 4), 48).shape
    torch.Size([24, 48])
    >>> dec = QueryDecoder(48, layers=1, heads=4, ffn_dim=64)
    >>> dec(torch.zeros(2, 5, 48), torch.zeros(2, 24, 48), torch.zeros(24, 48)).shape
    torch.Size([2, 5, 48])
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["positional_encoding_3d", "QueryDecoder", "VisualTokens", "mlp"]


_ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU}


def mlp(din: int, hidden: int, dout: int, *, activation: str = "gelu", final_gelu: bool = False) -> nn.Sequential:
    """Linear -> activation -> Linear (-> GELU when ``final_gelu``)."""
    layers = [nn.Linear(din, hidden), _ACTIVATIONS[activation](), nn.Linear(hidden, dout)]
    return nn.Sequential(*layers, nn.GELU()) if final_gelu else nn.Sequential(*layers)


def positional_encoding_3d(grid: Sequence[int], dim: int, *, device=None, dtype=torch.float32) -> torch.Tensor:
    """Fixed sinusoidal encoding of a 3D token grid.

    The channels are split in three groups (x, y, z), each holding sin/cos
    pairs of the coordinate at geometric frequencies.

    Returns:
        [X*Y*Z, dim] tensor, tokens in C order (x slowest, z fastest).
    """
    per_axis = 2 * math.ceil(dim / 6)
    freqs = 1.0 / (10000 ** (torch.arange(0, per_axis, 2, dtype=torch.float64) / per_axis))
    parts = []
    for n in grid:
        angle = torch.arange(n, dtype=torch.float64)[:, None] * freqs[None]
        parts.append(torch.stack([angle.sin(), angle.cos()], dim=-1).flatten(1))  # [n, per_axis]
    gx, gy, gz = (len(p) for p in parts)
    enc = torch.cat(
        [
            parts[0][:, None, None].expand(gx, gy, gz, per_axis),
            parts[1][None, :, None].expand(gx, gy, gz, per_axis),
            parts[2][None, None, :].expand(gx, gy, gz, per_axis),
        ],
        dim=-1,
    )[..., :dim]
    return enc.reshape(gx * gy * gz, dim).to(device=device, dtype=dtype)


class VisualTokens(nn.Module):
    """Pool several encoder scales to the coarsest grid, concatenate and project.

    Input: encoder features finest first; the last ``len(widths)`` maps are used.
    Output: tokens [B, T, query_dim] and the positional encoding [T, query_dim].
    ``hidden``: width of the projection's hidden layer (0: ``query_dim``); ``norm``: LayerNorm
    on the tokens; ``final_gelu``: GELU after the projection's last layer.
    """

    def __init__(self, widths: Sequence[int], query_dim: int, *, hidden: int = 0, norm: bool = True,
                 final_gelu: bool = False) -> None:
        super().__init__()
        self.widths = tuple(widths)
        self.proj = mlp(sum(self.widths), hidden or query_dim, query_dim, final_gelu=final_gelu)
        self.norm = nn.LayerNorm(query_dim) if norm else nn.Identity()

    def forward(self, feats: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        feats = list(feats)[-len(self.widths):]
        grid = feats[-1].shape[2:]
        tokens = torch.cat([_block_mean(f, tuple(grid)) for f in feats], dim=-1).flatten(1, 3)  # [B, T, C]
        tokens = self.norm(self.proj(tokens))
        pos = positional_encoding_3d(tuple(grid), tokens.shape[-1], device=tokens.device, dtype=tokens.dtype)
        return tokens, pos


def _block_mean(f: torch.Tensor, grid: tuple[int, ...]) -> torch.Tensor:
    """Average-pool [B, C, X, Y, Z] to ``grid`` -> [B, gx, gy, gz, C].

    One axis at a time, each a reduction over an outer dimension with a contiguous inner
    block (fast, and no layout copy for channels-last input).
    """
    b, c = f.shape[:2]
    v = f.permute(0, 2, 3, 4, 1)  # [B, X, Y, Z, C]
    for axis, g in enumerate(grid, start=1):
        k = v.shape[axis] // g
        if k > 1:
            v = v.unflatten(axis, (g, k)).mean(dim=axis + 1)
    return v


class DecoderLayer(nn.Module):
    """Pre-norm layer: (optional self-attention), cross-attention to visual tokens, feed-forward.

    The keys are ``memory + pos``, the values ``memory``; queries carry no position.
    """

    def __init__(self, dim: int, heads: int, ffn_dim: int, *, self_attention: bool, activation: str = "gelu") -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, heads, batch_first=True) if self_attention else None
        self.norm_self = nn.LayerNorm(dim) if self_attention else None
        self.cross_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm_cross = nn.LayerNorm(dim)
        self.ffn = mlp(dim, ffn_dim, dim, activation=activation)
        self.norm_ffn = nn.LayerNorm(dim)

    def forward(
        self,
        q: torch.Tensor,
        memory: torch.Tensor,
        pos: torch.Tensor,
        pad_mask: torch.Tensor | None,
    ) -> torch.Tensor:
        if self.self_attn is not None:
            h = self.norm_self(q)
            q = q + self.self_attn(h, h, h, key_padding_mask=pad_mask, need_weights=False)[0]
        h = self.norm_cross(q)
        q = q + self.cross_attn(h, memory + pos, memory, need_weights=False)[0]
        return q + self.ffn(self.norm_ffn(q))


class QueryDecoder(nn.Module):
    """Stack of :class:`DecoderLayer`; each query cross-attends to the visual tokens.

    Shapes: queries [B, N, D], memory [B, T, D], pos [T, D] -> [B, N, D].
    ``pad_mask`` [B, N] bool (True = padding) is used only by self-attention.
    """

    def __init__(self, dim: int, *, layers: int, heads: int, ffn_dim: int, self_attention: bool = False,
                 activation: str = "gelu") -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            DecoderLayer(dim, heads, ffn_dim, self_attention=self_attention, activation=activation)
            for _ in range(layers)
        )
        self.norm = nn.LayerNorm(dim)

    def forward(
        self,
        queries: torch.Tensor,
        memory: torch.Tensor,
        pos: torch.Tensor,
        pad_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        pos = pos.unsqueeze(0)
        for layer in self.layers:
            queries = layer(queries, memory, pos, pad_mask)
        return self.norm(queries)
