"""Memory-lean inference forward: the full-resolution U-Net stages in slabs.

At full resolution the activations of a large window are several GB each
(sat-nano, 288x288x96 window, 64 channels: 2 GB per tensor), and allocating and
freeing them costs as much as the arithmetic. :func:`lean_forward` computes the
same function as :meth:`SATNet.forward` (within float32 rounding) but runs the
finest encoder stage, the finest decoder stage and the mask generator slab by
slab along the first spatial axis:

- each 3x3x3 convolution reads its input slab plus one halo row on each side;
- instance-norm statistics are accumulated over the slabs (float64), and the
  normalisation + LeakyReLU of a layer is applied lazily to the next layer's
  input slab, so the raw conv output is the only full-size tensor;
- a chained convolution overwrites its own input buffer one slab behind (the
  rows it still needs as halo are never overwritten before use);
- the concatenated decoder input (upsampled features + skip) only exists per
  slab, the skip is freed as soon as it is consumed, and the logits of all
  queries are written slab by slab.

Example:
    >>> import torch
    >>> from sat.model import build_model
    >>> from sat.model.lean import lean_forward
    >>> net = build_model("sat-tiny").eval()
    >>> image, q = torch.randn(1, 1, 32, 32, 32), torch.randn(2, 384)
    >>> out = lean_forward(net, image, q, slab=8)
    >>> bool(torch.allclose(out.logits, net(image, q).logits, atol=1e-3))
    True
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from sat.model.network import SATNet, SATOutput
from sat.model.unet import ConvNormAct

__all__ = ["lean_forward"]

CL = torch.channels_last_3d
RowSource = Callable[[int, int, torch.Tensor], None]  # fill(lo, hi, dst) writes rows [lo, hi)


class _Stats:
    """Per-channel mean / variance accumulated over slabs (Chan's parallel update, float64)."""

    def __init__(self, channels: int) -> None:
        self.n = 0
        self.mean = torch.zeros(channels, dtype=torch.float64)
        self.m2 = torch.zeros(channels, dtype=torch.float64)

    def add(self, y: torch.Tensor) -> None:
        var, mean = torch.var_mean(y, dim=(0, 2, 3, 4), correction=0)
        k = y[0, 0].numel()
        mean, var = mean.double(), var.double()
        delta = mean - self.mean
        total = self.n + k
        self.m2 += var * k + delta.square() * (self.n * k / total)
        self.mean += delta * (k / total)
        self.n = total

    def scale_shift(self, block: ConvNormAct) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel (scale, shift) with ``norm(y) = y * scale + shift``, shaped [1, C, 1, 1, 1]."""
        inv = (self.m2 / self.n + block.norm.eps).rsqrt()
        scale = block.norm.weight.double() * inv
        shift = block.norm.bias.double() - self.mean * scale
        view = (1, -1, 1, 1, 1)
        return scale.float().view(view), shift.float().view(view)


def _norm_act_(x: torch.Tensor, scale_shift, slope: float) -> torch.Tensor:
    scale, shift = scale_shift
    x.mul_(scale).add_(shift)
    return F.leaky_relu_(x, slope)


def _slabs(size: int, slab: int) -> list[tuple[int, int]]:
    return [(a, min(a + slab, size)) for a in range(0, size, slab)]


def _conv_slab(block: ConvNormAct, fill: RowSource, cin: int, a: int, b: int, size: int, like: torch.Tensor):
    """Conv of rows [a, b) from an input assembled (with zero halo rows outside the volume) by ``fill``."""
    lo, hi = max(a - 1, 0), min(b + 1, size)
    buf = torch.empty((1, cin, b - a + 2, *like.shape[3:]), dtype=like.dtype, device=like.device, memory_format=CL)
    start, stop = lo - (a - 1), hi - (a - 1)
    buf[:, :, :start] = 0  # zero padding outside the volume
    buf[:, :, stop:] = 0
    fill(lo, hi, buf[:, :, start:stop])
    conv = block.conv
    return F.conv3d(buf, conv.weight, conv.bias, padding=(0, 1, 1))


def _first_conv(block: ConvNormAct, fill: RowSource, cin: int, like: torch.Tensor, slab: int):
    """First conv of a chain into a new full-size buffer; returns (raw output, stats)."""
    size = like.shape[2]
    cout = block.conv.out_channels
    out = torch.empty((1, cout, *like.shape[2:]), dtype=like.dtype, device=like.device, memory_format=CL)
    stats = _Stats(cout)
    for a, b in _slabs(size, slab):
        y = _conv_slab(block, fill, cin, a, b, size, like)
        stats.add(y)
        out[:, :, a:b] = y
    return out, stats


def _chained_conv(block: ConvNormAct, prev: ConvNormAct, h: torch.Tensor, stats: _Stats, slab: int, slope: float):
    """conv(act(norm(h))) written back into ``h`` one slab behind; returns new stats."""
    size, cin = h.shape[2], h.shape[1]
    norm = stats.scale_shift(prev)

    def fill(lo: int, hi: int, dst: torch.Tensor) -> None:
        dst.copy_(h[:, :, lo:hi])
        _norm_act_(dst, norm, slope)

    new = _Stats(block.conv.out_channels)
    pending = None
    for a, b in _slabs(size, slab):
        y = _conv_slab(block, fill, cin, a, b, size, h)
        new.add(y)
        if pending is not None:
            h[:, :, pending[0]:pending[1]] = pending[2]
        pending = (a, b, y)
    h[:, :, pending[0]:pending[1]] = pending[2]
    return new


def _chain(blocks, h: torch.Tensor, stats: _Stats, slab: int, slope: float) -> _Stats:
    for prev, block in zip(blocks[:-1], blocks[1:]):
        stats = _chained_conv(block, prev, h, stats, slab, slope)
    return stats


def _finest_encoder(model: SATNet, image: torch.Tensor, slab: int, slope: float) -> torch.Tensor:
    blocks = list(model.backbone.encoder[0])

    def fill(lo: int, hi: int, dst: torch.Tensor) -> None:
        dst.copy_(image[:, :, lo:hi])

    h, stats = _first_conv(blocks[0], fill, image.shape[1], image, slab)
    stats = _chain(blocks, h, stats, slab, slope)
    norm = stats.scale_shift(blocks[-1])
    for a, b in _slabs(h.shape[2], slab):
        _norm_act_(h[:, :, a:b], norm, slope)
    return h


def _finest_decoder(model: SATNet, coarse: torch.Tensor, skips: list, slab: int, slope: float):
    """Finest decoder stage; pops the full-resolution skip from ``skips`` as soon as it is consumed."""
    stage = model.backbone.decoder[0]
    blocks = list(stage.blocks)
    skip = skips.pop(0)
    cup = stage.up.out_channels

    def fill(lo: int, hi: int, dst: torch.Tensor) -> None:
        i0, i1 = lo // 2, (hi + 1) // 2
        up = F.conv_transpose3d(coarse[:, :, i0:i1], stage.up.weight, stage.up.bias, stride=2)
        dst[:, :cup] = up[:, :, lo - 2 * i0: hi - 2 * i0]
        dst[:, cup:] = skip[:, :, lo:hi]

    h, stats = _first_conv(blocks[0], fill, cup + skip.shape[1], skip, slab)
    del skip, fill
    stats = _chain(blocks, h, stats, slab, slope)
    return h, stats.scale_shift(blocks[-1])


def _lean_one(model: SATNet, image: torch.Tensor, queries: torch.Tensor, slab: int) -> SATOutput:
    slope = model.config.negative_slope
    backbone = model.backbone
    skips = [_finest_encoder(model, image, slab, slope)]
    for stage in backbone.encoder[1:]:
        skips.append(stage(skips[-1]))
    q, presence = model.decode_queries(skips, queries)
    x = skips.pop()
    for i in range(len(backbone.decoder) - 1, 0, -1):
        x = backbone.decoder[i](x, skips.pop())
    h, norm = _finest_decoder(model, x, skips, slab, slope)
    del x
    emb = model.mask_heads[0](q)[0]  # [N, C]
    size = h.shape[2]
    logits = torch.empty((1, emb.shape[0], *h.shape[2:]), dtype=h.dtype, device=h.device)
    for a, b in _slabs(size, slab):
        f = _norm_act_(h[:, :, a:b], norm, slope)  # in place: h is not needed afterwards
        flat = f.permute(0, 2, 3, 4, 1).reshape(-1, f.shape[1])  # [V, C], no copy in channels-last
        logits[0, :, a:b] = torch.mm(emb, flat.t()).view(emb.shape[0], b - a, *h.shape[3:])
    return SATOutput(logits=logits, presence=presence)


def lean_forward(model: SATNet, image: torch.Tensor, queries: torch.Tensor, *, slab: int = 8) -> SATOutput:
    """Inference forward of ``model`` with the full-resolution stages computed in slabs.

    Same inputs and outputs as ``model(image, queries)`` in eval mode (no deep supervision);
    numerically equal within float32 rounding (about 1e-5 relative). Runs under
    ``torch.inference_mode``; batches are processed one image at a time.

    Args:
        model: a SATNet.
        image: [B, 1, X, Y, Z] float32.
        queries: [N, text_dim] or [B, N, text_dim].
        slab: rows of the first spatial axis per slab (even numbers keep the upsampling aligned).
    """
    model.check_image(image)
    slab = max(2, slab + slab % 2)
    outs = []
    with torch.inference_mode():
        for i in range(image.shape[0]):
            q = queries if queries.ndim == 2 else queries[i: i + 1]
            img = image[i: i + 1].contiguous(memory_format=CL)
            outs.append(_lean_one(model, img, q, slab))
    if len(outs) == 1:
        return outs[0]
    return SATOutput(logits=torch.cat([o.logits for o in outs]), presence=torch.cat([o.presence for o in outs]))
