"""3D U-Net backbone (plain conv - instance norm - LeakyReLU stages).

Example:
    >>> import torch
    >>> from sat.model.unet import UNet3D
    >>> net = UNet3D(1, (8, 16, 32), (1, 1, 1), (1, 1))
    >>> skips, decoded = net(torch.zeros(1, 1, 16, 16, 16))
    >>> [tuple(f.shape[1:]) for f in decoded]
    [(8, 16, 16, 16), (16, 8, 8, 8)]
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ConvNormAct", "UNet3D"]

CL = torch.channels_last_3d
_EXACT_NORM_VOXELS = 1 << 16


class ConvNormAct(nn.Module):
    """3x3x3 convolution (bias) -> InstanceNorm3d (affine) -> LeakyReLU.

    Shapes: [B, C_in, X, Y, Z] -> [B, C_out, X/s, Y/s, Z/s] float32.
    """

    def __init__(self, cin: int, cout: int, *, stride: int = 1, negative_slope: float = 0.01) -> None:
        super().__init__()
        self.conv = nn.Conv3d(cin, cout, 3, stride=stride, padding=1, bias=True)
        self.norm = nn.InstanceNorm3d(cout, eps=1e-5, affine=True)
        self.negative_slope = negative_slope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = instance_norm(self.conv(x), self.norm.weight, self.norm.bias, self.norm.eps)
        return F.leaky_relu(x, self.negative_slope, inplace=True)


def instance_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
    """Instance norm as group norm with one channel per group (PyTorch's fastest CPU kernel).

    PyTorch's channels-last group-norm kernel accumulates its statistics with a
    visible float32 error on large volumes (about 6e-3 after normalisation for
    a 288x288x96 volume whose mean is 6 standard deviations), so large
    channels-last inputs are normalised in the standard layout, which is exact
    to float32 rounding, and converted back.
    """
    c = x.shape[1]
    if x[0, 0].numel() > _EXACT_NORM_VOXELS and x.is_contiguous(memory_format=CL) and not x.is_contiguous():
        return F.group_norm(x.contiguous(), c, weight, bias, eps).contiguous(memory_format=CL)
    return F.group_norm(x, c, weight, bias, eps)


def _stage(cin: int, cout: int, depth: int, *, stride: int, slope: float) -> nn.Sequential:
    blocks = [ConvNormAct(cin, cout, stride=stride, negative_slope=slope)]
    blocks += [ConvNormAct(cout, cout, negative_slope=slope) for _ in range(depth - 1)]
    return nn.Sequential(*blocks)


class UpStage(nn.Module):
    """Transposed conv (x2) of the coarser features, concatenation with the skip, conv blocks."""

    def __init__(self, cin: int, cout: int, depth: int, *, slope: float, bias: bool = False) -> None:
        super().__init__()
        self.up = nn.ConvTranspose3d(cin, cout, 2, stride=2, bias=bias)
        self.blocks = _stage(2 * cout, cout, depth, stride=1, slope=slope)

    def forward(self, coarse: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        up = self.up(coarse)  # torch's transposed conv: faster on CPU than a matrix-product rewrite
        return self.blocks(torch.cat([up, skip.contiguous(memory_format=CL)], dim=1))


class UNet3D(nn.Module):
    """Encoder-decoder with ``len(widths)`` levels; level ``i`` has stride ``2**i``.

    ``forward`` returns ``(skips, decoded)``: the encoder outputs (finest first,
    ``skips[i]`` has ``widths[i]`` channels) and the decoder outputs (finest
    first, ``decoded[i]`` has ``widths[i]`` channels, ``len(widths) - 1`` maps).
    """

    def __init__(
        self,
        in_channels: int,
        widths: Sequence[int],
        depths: Sequence[int],
        decoder_depths: Sequence[int],
        *,
        negative_slope: float = 0.01,
        upsample_bias: bool = False,
    ) -> None:
        super().__init__()
        self.widths = tuple(widths)
        cins = (in_channels, *widths[:-1])
        self.encoder = nn.ModuleList(
            _stage(cin, cout, d, stride=1 if i == 0 else 2, slope=negative_slope)
            for i, (cin, cout, d) in enumerate(zip(cins, widths, depths, strict=True))
        )
        self.decoder = nn.ModuleList(
            UpStage(widths[i + 1], widths[i], decoder_depths[i], slope=negative_slope, bias=upsample_bias)
            for i in range(len(widths) - 1)
        )
        self.apply(_init_weights)

    def encode(self, image: torch.Tensor) -> list[torch.Tensor]:
        """Encoder features, finest first (channels-last-3d layout: faster oneDNN convolutions)."""
        skips, x = [], image.contiguous(memory_format=CL)
        for stage in self.encoder:
            x = stage(x)
            skips.append(x)
        return skips

    def decode(self, skips: list[torch.Tensor], *, levels: int | None = None) -> list[torch.Tensor]:
        """Decoder features, finest first; ``levels`` limits how many fine levels are computed."""
        n = len(self.decoder)
        stop = 0 if levels is None else n - levels
        x, out = skips[-1], []
        for i in range(n - 1, stop - 1, -1):
            x = self.decoder[i](x, skips[i])
            out.append(x)
        return out[::-1]

    def forward(self, image: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        skips = self.encode(image)
        return skips, self.decode(skips)


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, (nn.Conv3d, nn.ConvTranspose3d)):
        nn.init.kaiming_normal_(module.weight, a=1e-2)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
