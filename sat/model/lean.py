"""Memory-lean inference forward: the full-resolution U-Net stages in slabs.

At full resolution the activations of a large window are several GB each
(a 288x288x96 window with 64 channels: 2 GB per tensor), and allocating and
freeing them costs as much as the arithmetic. :func:`lean_forward` computes the
same function as :meth:`SATNet.forward` (equal within float32 rounding) but runs
the finest encoder stage, the finest decoder stage and the mask generator slab
by slab along the first spatial axis, in ONE full-size buffer:

- a 3x3x3 convolution reads its input rows (plus one halo row each side) as
  views of the buffer and writes its output back into the same buffer one slab
  behind, when those rows are no longer needed as halo;
- instance-norm statistics are accumulated over slabs (float64) and the
  normalisation + LeakyReLU is applied in place just before the rows are read;
- the single-channel first convolution is an im2col matrix product;
- the decoder's upsampling (2x2x2 transposed conv) followed by the 3x3x3 conv
  of the upsampled half of the concatenation is one composite linear map, run
  as a 2x2x2 conv on the coarse grid producing the 8 output parities (3.4x
  fewer multiply-adds, and the upsampled tensor never exists); the skip half
  is convolved separately and added;
- the logits of all queries are written slab by slab.

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

from sat.model.network import VETO, SATNet, SATOutput
from sat.model.unet import ConvNormAct

__all__ = ["lean_forward", "composite_up_kernel"]

CL = torch.channels_last_3d
Rows = Callable[[int, int], torch.Tensor]  # rows(lo, hi) -> [1, C, hi - lo, Y, Z]


class _Stats:
    """Per-channel mean / variance accumulated over slabs (Chan's parallel update, float64)."""

    def __init__(self, channels: int) -> None:
        self.n = 0
        self.mean = torch.zeros(channels, dtype=torch.float64)
        self.m2 = torch.zeros(channels, dtype=torch.float64)

    def add(self, y: torch.Tensor) -> None:
        c = y.shape[1]
        if not y.is_contiguous(memory_format=CL):
            y = y.contiguous(memory_format=CL)
        flat = y.permute(0, 2, 3, 4, 1).reshape(-1, c)  # [V, C] view
        k = flat.shape[0]
        # torch.sum reduces with cascaded partial sums (float32 error ~1e-7 relative); the
        # channels-last group-norm kernel does not, so it is not used for statistics here
        mean32 = flat.sum(0).div_(k)
        centred = flat - mean32
        var = centred.square_().sum(0).double().div_(k)
        mean = mean32.double()
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


def _conv_rows(rows: Rows, weight: torch.Tensor, bias, a: int, b: int, size: int) -> torch.Tensor:
    """Rows [a, b) of a zero-padded 3x3x3 conv whose input rows come from ``rows``."""
    lo, hi = max(a - 1, 0), min(b + 1, size)
    first, last = a == 0, b == size
    x = rows(lo, hi)
    if first == last:  # interior slab (halo on both sides) or the whole axis at once
        return F.conv3d(x, weight, bias, padding=(1 if first else 0, 1, 1))
    y = F.conv3d(x, weight, bias, padding=1)
    return y[:, :, :-1] if first else y[:, :, 1:]


def _im2col_conv(image: torch.Tensor, block: ConvNormAct, out: torch.Tensor, stats, slab: int) -> None:
    """Single-channel 3x3x3 conv as a matrix product, written straight into ``out`` (channels-last)."""
    conv = block.conv
    cout = conv.out_channels
    wmat = conv.weight.reshape(cout, 27).t()
    size, ny, nz = image.shape[2:]
    padded = F.pad(image[0, 0], (1, 1, 1, 1, 1, 1))
    for a, b in _slabs(size, slab):
        src = padded[a: b + 2]
        cols = torch.stack(
            [src[i: i + b - a, j: j + ny, k: k + nz] for i in range(3) for j in range(3) for k in range(3)]
        ).reshape(27, -1)  # [27, V]: 27 block copies (cheaper than an interleaved [V, 27] stack)
        dst = out[:, :, a:b].permute(0, 2, 3, 4, 1).reshape(-1, cout)  # a view: out is channels-last
        torch.addmm(conv.bias, cols.t(), wmat, out=dst)
        stats.add(out[:, :, a:b])


def _conv_in_place(h: torch.Tensor, rows: Rows, weight: torch.Tensor, bias: torch.Tensor | None, slab: int, *,
                   prepare: Callable[[int, int], None] | None = None,
                   extra: Callable[[torch.Tensor, int, int], None] | None = None) -> _Stats:
    """3x3x3 conv over ``rows`` written into ``h`` one slab behind; returns the output statistics.

    ``prepare(lo, hi)`` is called before rows [lo, hi) are first read; ``extra(y, a, b)`` may add
    to the output rows [a, b) in place before they are stored.
    """
    size = h.shape[2]
    stats = _Stats(h.shape[1])
    ready, pending = 0, None
    for a, b in _slabs(size, slab):
        need = min(b + 1, size)
        if prepare is not None and need > ready:
            prepare(ready, need)
            ready = need
        y = _conv_rows(rows, weight, bias, a, b, size)
        if not y.is_contiguous(memory_format=CL):
            y = y.contiguous(memory_format=CL)
        if extra is not None:
            extra(y, a, b)
        stats.add(y)
        if pending is not None:
            h[:, :, pending[0]:pending[1]] = pending[2]
        pending = (a, b, y)
    h[:, :, pending[0]:pending[1]] = pending[2]
    return stats


def _buffer_rows(h: torch.Tensor) -> Rows:
    return lambda lo, hi: h[:, :, lo:hi]


def _chain(blocks: list[ConvNormAct], h: torch.Tensor, stats: _Stats, slab: int, slope: float) -> _Stats:
    """Apply blocks[1:] in place on ``h`` (raw output of blocks[0] with ``stats``); returns the last stats."""
    for prev, block in zip(blocks[:-1], blocks[1:], strict=True):
        norm = stats.scale_shift(prev)
        stats = _conv_in_place(
            h, _buffer_rows(h), block.conv.weight, block.conv.bias, slab,
            prepare=lambda lo, hi, norm=norm: _norm_act_(h[:, :, lo:hi], norm, slope),
        )
    return stats


def _finest_encoder(model: SATNet, image: torch.Tensor, slab: int, slope: float) -> torch.Tensor:
    blocks = list(model.backbone.encoder[0])
    cout = blocks[0].conv.out_channels
    h = torch.empty((1, cout, *image.shape[2:]), dtype=image.dtype, device=image.device, memory_format=CL)
    if image.shape[1] == 1:
        stats = _Stats(cout)
        _im2col_conv(image, blocks[0], h, stats, slab)
    else:
        src = image.contiguous(memory_format=CL)
        stats = _Stats(cout)
        for a, b in _slabs(h.shape[2], slab):
            h[:, :, a:b] = _conv_rows(_buffer_rows(src), blocks[0].conv.weight, blocks[0].conv.bias, a, b, h.shape[2])
            stats.add(h[:, :, a:b])
    stats = _chain(blocks, h, stats, slab, slope)
    norm = stats.scale_shift(blocks[-1])
    for a, b in _slabs(h.shape[2], slab):
        _norm_act_(h[:, :, a:b], norm, slope)
    return h


# parity tables: for output parity p, coarse offset index e -> [(3x3x3 tap d, transposed-conv tap q)]
_TAPS = {0: {0: [(0, 1)], 1: [(1, 0), (2, 1)]}, 1: {0: [(0, 0), (1, 1)], 1: [(2, 0)]}}


def composite_up_kernel(up_weight: torch.Tensor, conv_weight: torch.Tensor) -> torch.Tensor:
    """Kernel of conv3x3(convT2x2(x)) as a 2x2x2 conv on the coarse grid with 8 parity groups.

    Args:
        up_weight: transposed-conv weight [Cin, Cup, 2, 2, 2] (no bias).
        conv_weight: the part of the 3x3x3 conv weight acting on the upsampled channels [Cout, Cup, 3, 3, 3].

    Returns:
        [8 * Cout, Cin, 2, 2, 2] weight; output group ``4*px + 2*py + pz`` holds parity (px, py, pz),
        and its value at coarse index ``i + p`` (per axis) is the fine output at ``2*i + p``
        when the coarse input is zero-padded by one voxel on every side.
    """
    cin, cup = up_weight.shape[:2]
    cout = conv_weight.shape[0]
    wc = conv_weight.double().permute(0, 2, 3, 4, 1).reshape(cout * 27, cup)
    wu = up_weight.double().permute(1, 0, 2, 3, 4).reshape(cup, cin * 8)
    pair = (wc @ wu).view(cout, 3, 3, 3, cin, 2, 2, 2)  # [o, dx, dy, dz, i, qx, qy, qz]
    taps = torch.zeros(2, 2, 3, 2, dtype=torch.float64, device=pair.device)  # [p, e, d, q]
    for p, table in _TAPS.items():
        for e, pairs in table.items():
            for d, q in pairs:
                taps[p, e, d, q] = 1.0
    kernel = torch.einsum("oxyzirst,Aaxr,Bbys,Cczt->ABCoiabc", pair, taps, taps, taps)
    return kernel.reshape(8 * cout, cin, 2, 2, 2).to(conv_weight.dtype)


def _add_up_rows(coarse: torch.Tensor, kernel: torch.Tensor, cout: int) -> Callable[[torch.Tensor, int, int], None]:
    """Adder of rows [a, b) (a, b even) of conv3x3(convT(coarse)) via the composite parity kernel.

    A kernel with one more input channel than ``coarse`` reads a channel of ones inside the
    volume (zero in the padding): the transposed convolution's bias (see :func:`_finest_decoder`).
    """
    n = coarse.shape[2]
    ny, nz = coarse.shape[3:]
    cin = coarse.shape[1]
    parities = [(x, y, z) for x in (0, 1) for y in (0, 1) for z in (0, 1)]

    def add(y: torch.Tensor, a: int, b: int) -> None:
        i0, i1 = a // 2, b // 2
        m = i1 - i0
        lo, hi = max(i0 - 1, 0), min(i1 + 1, n)
        buf = torch.zeros((1, kernel.shape[1], m + 2, ny + 2, nz + 2), dtype=coarse.dtype,
                          device=coarse.device).contiguous(memory_format=CL)
        inside = (slice(None), slice(None, cin), slice(lo - (i0 - 1), hi - (i0 - 1)), slice(1, -1), slice(1, -1))
        buf[inside] = coarse[:, :, lo:hi]
        if kernel.shape[1] > cin:
            buf[(slice(None), slice(cin, None), *inside[2:])] = 1.0
        r = F.conv3d(buf, kernel).permute(0, 2, 3, 4, 1).reshape(m + 1, ny + 1, nz + 1, 8, cout)
        if not y.is_contiguous(memory_format=CL):
            raise RuntimeError("internal: slab output must be channels-last")
        view = y.permute(0, 2, 3, 4, 1)[0].unflatten(0, (m, 2)).unflatten(2, (ny, 2)).unflatten(4, (nz, 2))
        for g, (px, py, pz) in enumerate(parities):
            view[:, px, :, py, :, pz] += r[px: px + m, py: py + ny, pz: pz + nz, g]

    return add


def _finest_decoder(model: SATNet, coarse: torch.Tensor, skip: torch.Tensor, slab: int, slope: float):
    """Finest decoder stage, computed in place in ``skip``'s buffer; returns (buffer, final norm)."""
    stage = model.backbone.decoder[0]
    blocks = list(stage.blocks)
    cup = stage.up.out_channels
    first = blocks[0].conv
    up_weight = stage.up.weight
    if stage.up.bias is not None:  # the bias is the weight of an extra input channel of ones
        bias = stage.up.bias.view(1, cup, 1, 1, 1).expand(1, cup, 2, 2, 2)
        up_weight = torch.cat([up_weight, bias])
    kernel = composite_up_kernel(up_weight, first.weight[:, :cup])
    if first.out_channels != skip.shape[1]:
        raise NotImplementedError("lean_forward assumes decoder width == skip width")
    add_up = _add_up_rows(coarse, kernel, first.out_channels)
    stats = _conv_in_place(skip, _buffer_rows(skip), first.weight[:, cup:], first.bias, slab, extra=add_up)
    stats = _chain(blocks, skip, stats, slab, slope)
    return skip, stats.scale_shift(blocks[-1])


def _lean_one(model: SATNet, image: torch.Tensor, queries: torch.Tensor, slab: int, gate: bool,
              veto: float) -> SATOutput:
    slope = model.config.negative_slope
    backbone = model.backbone
    skips = [_finest_encoder(model, image, slab, slope)]
    for stage in backbone.encoder[1:]:
        skips.append(stage(skips[-1]))
    q, presence = model.decode_queries(skips, queries)
    x = skips.pop()
    for i in range(len(backbone.decoder) - 1, 0, -1):
        x = backbone.decoder[i](x, skips.pop())
    h, norm = _finest_decoder(model, x, skips.pop(), slab, slope)
    del x
    emb, active, logits = model.prepare_mask(q, presence, h.shape[2:], gate=gate, veto=veto)
    emb, idx = emb[0], active[0]
    for a, b in _slabs(h.shape[2], slab):
        f = _norm_act_(h[:, :, a:b], norm, slope)  # in place: h is not needed afterwards
        if len(idx):
            flat = f.permute(0, 2, 3, 4, 1).reshape(-1, f.shape[1])  # [V, C], a view in channels-last
            rows = torch.mm(emb, flat.t()).view(len(idx), b - a, *h.shape[3:])
            logits[0, :, a:b].index_copy_(0, idx, rows)
    return SATOutput(logits=logits, presence=presence)


def lean_forward(
    model: SATNet, image: torch.Tensor, queries: torch.Tensor, *, slab: int = 8, gate: bool = False,
    veto: float = VETO,
) -> SATOutput:
    """Inference forward of ``model`` with the full-resolution stages computed in slabs.

    Same inputs and outputs as ``model(image, queries)`` in eval mode (no deep supervision);
    equal within float32 rounding (about 1e-5 relative). Runs under ``torch.inference_mode``;
    batches are processed one image at a time.

    Args:
        model: a SATNet.
        image: [B, 1, X, Y, Z] float32.
        queries: [N, text_dim] or [B, N, text_dim].
        slab: rows of the first spatial axis per slab (rounded up to an even number).
        gate: presence gating (see :meth:`SATNet.prepare_mask`): prompts a window vetoes (presence
            probability below ``veto``) get their presence logit everywhere and no mask product.
    """
    model.check_image(image)
    slab = max(2, slab + slab % 2)
    outs = []
    with torch.inference_mode():
        for i in range(image.shape[0]):
            q = queries if queries.ndim == 2 else queries[i: i + 1]
            img = image[i: i + 1].contiguous(memory_format=CL)
            outs.append(_lean_one(model, img, q, slab, gate, veto))
    if len(outs) == 1:
        return outs[0]
    return SATOutput(logits=torch.cat([o.logits for o in outs]), presence=torch.cat([o.presence for o in outs]))
