"""Widen a trained SATNet without changing what it computes (new channels start silent).

A wider network (more channels at some U-Net levels, everything else equal) takes every
weight of the narrower one at the same place; the new channels keep their fresh random
incoming weights, and every weight that carries a new channel into an old one is zero, so
the wider network gives the same outputs until training moves it (the zero-initialised
expansion of Net2Net, Chen et al. 2016). Training then uses the new channels: their
outgoing weights get gradients from the first step.

Example:
    >>> import torch
    >>> from sat.model import build_model
    >>> from sat.model.widen import widen_into
    >>> old = build_model({"widths": (8, 16, 32, 64), "depths": (1,) * 4, "decoder_depths": (1,) * 3,
    ...                    "token_levels": 2, "deep_supervision": 1, "patch_size": (16, 16, 16)}).eval()
    >>> new = build_model({**old.config.to_dict(), "widths": (8, 16, 32, 128)}).eval()
    >>> widen_into(new, old)
    >>> x, q = torch.randn(1, 1, 16, 16, 16), torch.randn(2, 384)
    >>> torch.allclose(new(x, q).logits, old(x, q).logits, atol=1e-5)
    True
"""

from __future__ import annotations

import torch
from torch import nn

from sat.errors import ConfigError
from sat.model.config import WEIGHT_FREE

__all__ = ["widen_into", "can_widen", "widen_head"]

# (output dim, input dim) of the weight of each layer type
_DIMS: dict[type, tuple[int, int]] = {nn.Conv3d: (0, 1), nn.Linear: (0, 1), nn.ConvTranspose3d: (1, 0)}


# config fields that may differ besides the widths
_FREE = WEIGHT_FREE | {"widths", "preset"}


def can_widen(old: dict, new: dict) -> bool:
    """True when config ``new`` has wider levels than ``old`` (level by level, at least as wide, not
    all equal) and the same weight-shaping fields otherwise."""
    ow, nw = tuple(old.get("widths", ())), tuple(new.get("widths", ()))
    if len(ow) != len(nw) or ow == nw or any(n < o for o, n in zip(ow, nw, strict=True)):
        return False
    return all(old.get(k) == new.get(k) for k in set(old) | set(new) if k not in _FREE)


def _concat_inputs(net: nn.Module, old_widths: tuple[int, ...]) -> dict[str, list[tuple[int, int]]]:
    """Weights whose input is a concatenation of levels: their (old, new) segment sizes."""
    new_widths = net.config.widths
    segments = {
        f"backbone.decoder.{i}.blocks.0.conv.weight": [(old_widths[i], new_widths[i])] * 2  # [upsampled, skip]
        for i in range(len(new_widths) - 1)
    }
    levels = range(len(new_widths) - net.config.token_levels, len(new_widths))
    segments["tokens.proj.0.weight"] = [(old_widths[k], new_widths[k]) for k in levels]
    return segments


def _old_positions(segments: list[tuple[int, int]]) -> torch.Tensor:
    """Positions in the new concatenation of the old channels (each segment's old channels first)."""
    parts, start = [], 0
    for old, new in segments:
        parts.append(torch.arange(start, start + old))
        start += new
    return torch.cat(parts)


@torch.no_grad()
def widen_into(new: nn.Module, old: nn.Module) -> None:
    """Copy ``old``'s weights into the wider ``new`` (both :class:`~sat.model.SATNet`), in place.

    Raises:
        ConfigError: unless ``new.config`` is ``old.config`` with wider levels (:func:`can_widen`).
    """
    if not can_widen(old.config.to_dict(), new.config.to_dict()):
        raise ConfigError(f"cannot widen {old.config.widths} into {new.config.widths}: only the widths may "
                          "differ, and each level must be at least as wide")
    concat = _concat_inputs(new, old.config.widths)
    modules = dict(new.named_modules())
    source = old.state_dict()
    for name, p in new.named_parameters():
        q = source[name].to(p.dtype)
        if q.shape == p.shape:
            p.copy_(q)
            continue
        owner, kind = name.rsplit(".", 1)
        dims = _DIMS.get(type(modules[owner]))
        if kind != "weight" or dims is None:  # biases, norm scales: old channels first, the new keep their init
            p[: q.shape[0]] = q
            if owner.startswith("mask_heads."):  # a new mask-embedding channel must add nothing to the dot product
                p[q.shape[0]:] = 0
            continue
        out_dim, in_dim = dims
        rows = torch.zeros((*p.shape[:out_dim], q.shape[out_dim], *p.shape[out_dim + 1:]), dtype=p.dtype)
        inputs = _old_positions(concat[name]) if name in concat else torch.arange(q.shape[in_dim])
        rows.index_copy_(in_dim, inputs, q)  # old outputs read old inputs only
        p.index_copy_(out_dim, torch.arange(q.shape[out_dim]), rows)
        if owner.startswith("mask_heads."):
            p.narrow(out_dim, q.shape[out_dim], p.shape[out_dim] - q.shape[out_dim]).zero_()


@torch.no_grad()
def widen_head(old: nn.Module, feature_widths: tuple[int, ...]) -> nn.Module:
    """A :class:`~sat.model.prompt_head.PromptHead` for a widened network that computes what ``old`` does.

    The head reads the network's decoder levels 0-2; when :func:`widen_into` widened them, their new
    channels come after the old ones at each level. The new head takes ``old``'s weights, and its first
    convolution reads the new channels with zero weights, so it ignores them until training moves it.

    Raises:
        ConfigError: unless ``feature_widths`` is ``old.config.feature_widths`` with wider levels.
    """
    from dataclasses import replace

    from sat.model.prompt_head import GUIDANCE_CHANNELS, PromptHead

    ow, nw = tuple(old.config.feature_widths), tuple(feature_widths)
    if len(ow) != len(nw) or any(n < o for o, n in zip(ow, nw, strict=True)):
        raise ConfigError(f"cannot widen a head reading {ow} channels into one reading {nw}")
    new = PromptHead(replace(old.config, feature_widths=nw))
    tail = 2 + GUIDANCE_CHANNELS  # text probability, has-text flag, guidance
    inputs = _old_positions([(1, 1), *zip(ow, nw, strict=True), (tail, tail)])  # image, levels, the rest
    source = old.state_dict()
    for name, p in new.named_parameters():
        q = source[name]
        if q.shape == p.shape:
            p.copy_(q)
        else:  # the first convolution: [out, in, k, k, k]
            p.zero_()
            p.index_copy_(1, inputs, q)
    return new
