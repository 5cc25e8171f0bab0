"""Spatial prompts (points and boxes) for a frozen SATNet: the prompt head.

The head is a second stage trained on its own over a frozen SAT network (as VISTA3D trains
its point branch): per window it reads the image, the network's decoder features (levels 0-2,
upsampled to full resolution), the text prompt's mask probability (when there is a text
prompt) and three guidance maps, and returns the prompt's mask logit. With text, its output
is a correction added to the network's own logit clipped to +-``base_clamp`` (its last layer
starts at zero, so an untrained head reproduces the automatic mask; the clip lets a click
overturn a confident mistake); without text, the output is the mask.

Guidance maps (model-space voxels of one window, float32 in [0, 1]):

- ``0``: positive clicks, a Gaussian ball of ``CLICK_SIGMA`` voxels around each;
- ``1``: negative clicks, likewise;
- ``2``: the box, 1 inside it (inclusive voxel bounds) and 0 outside.

Example:
    >>> import torch
    >>> from sat.model import build_model
    >>> from sat.model.prompt_head import PromptHead, guidance_maps, prompted_forward
    >>> net, head = build_model("sat-tiny").eval(), PromptHead.for_network(build_model("sat-tiny").config)
    >>> g = guidance_maps((32, 32, 32), points=[(10, 10, 10, 1)], box=None)[None]
    >>> prompted_forward(net, head, torch.zeros(1, 1, 32, 32, 32), torch.zeros(1, 384), g, has_text=True).shape
    torch.Size([1, 1, 32, 32, 32])
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from monai.networks.nets import BasicUNet
from torch import nn

from sat._atomic import atomic_write
from sat.errors import WeightsError
from sat.model.inference import gate_by_presence
from sat.model.weights import CONFIG_NAME, FORMAT_VERSION, WEIGHTS_NAME

__all__ = ["CLICK_SIGMA", "HEAD_FOLDER", "HeadConfig", "PromptHead", "guidance_maps", "load_head", "network_parts",
           "prompted_forward", "save_head"]

HEAD_FOLDER = "prompts"  # a model folder's prompt head lives in this sub-folder

CLICK_SIGMA = 1.5  # voxels: a click marks a ball of about 3 model voxels (9 mm at 3 mm)
GUIDANCE_CHANNELS = 3


@dataclass(frozen=True)
class HeadConfig:
    """Shape of a :class:`PromptHead`.

    Attributes:
        feature_widths: channels of the frozen network's decoder levels it reads (0, 1, 2: the finest three).
        features: BasicUNet widths (six numbers, MONAI's convention).
        click_sigma: Gaussian radius of a click in model voxels.
        base_clamp: the text logit the head corrects is clipped to +-base_clamp, so that a correction
            can overturn a confident automatic mistake (a logit of -10 at a missed voxel).
    """

    feature_widths: tuple[int, ...]
    features: tuple[int, ...] = (16, 16, 32, 64, 128, 16)
    click_sigma: float = CLICK_SIGMA
    base_clamp: float = 4.0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> HeadConfig:
        return cls(feature_widths=tuple(data["feature_widths"]), features=tuple(data["features"]),
                   click_sigma=float(data.get("click_sigma", CLICK_SIGMA)),
                   base_clamp=float(data.get("base_clamp", 4.0)))


def feature_widths(net_config) -> tuple[int, ...]:
    """Channels of the decoder levels a head reads: the finest three (fewer in a shallower network)."""
    return tuple(net_config.widths[:min(3, len(net_config.widths) - 1)])


class PromptHead(nn.Module):
    """Mask logit of one prompt per window from frozen SAT features, the text logit and guidance maps.

    Input channels: image (1) + decoder features (sum of ``feature_widths``) + text probability (1)
    + has-text flag (1) + guidance (3).
    """

    def __init__(self, config: HeadConfig) -> None:
        super().__init__()
        self.config = config
        cin = 1 + sum(config.feature_widths) + 2 + GUIDANCE_CHANNELS
        self.unet = BasicUNet(spatial_dims=3, in_channels=cin, out_channels=1, features=config.features,
                              act=("LeakyReLU", {"negative_slope": 0.01, "inplace": True}),
                              norm=("instance", {"affine": True}))
        nn.init.zeros_(self.unet.final_conv.weight)
        nn.init.zeros_(self.unet.final_conv.bias)

    @classmethod
    def for_network(cls, net_config, **kw) -> PromptHead:
        """A head for a network config (:class:`~sat.model.config.ModelConfig`)."""
        return cls(HeadConfig(feature_widths=feature_widths(net_config), **kw))

    def forward(self, image: torch.Tensor, feats: Sequence[torch.Tensor], text_logit: torch.Tensor,
                has_text: torch.Tensor, guidance: torch.Tensor) -> torch.Tensor:
        """Prompt mask logits ``[B, 1, X, Y, Z]``.

        Args:
            image: [B, 1, X, Y, Z] standardized windows.
            feats: the network's decoder levels 0, 1, 2 ([B, C_k, X/2**k, ...]).
            text_logit: [B, 1, X, Y, Z] the network's (gated) logit of the text prompt (any value
                where ``has_text`` is 0).
            has_text: [B] bool or float, whether the prompt has text.
            guidance: [B, 3, X, Y, Z] guidance maps (:func:`guidance_maps`).
        """
        size = image.shape[2:]
        up = [f if f.shape[2:] == size else F.interpolate(f, size=size, mode="trilinear", align_corners=False)
              for f in feats]
        flag = has_text.to(image.dtype).view(-1, 1, 1, 1, 1)
        text_logit = text_logit * flag  # no text: no text logit at all
        prob = torch.sigmoid(text_logit) * flag
        x = torch.cat([image, *up, prob, flag.expand_as(prob), guidance.to(image.dtype)], dim=1)
        return text_logit.clamp(-self.config.base_clamp, self.config.base_clamp) + self.unet(x)


def guidance_maps(shape: Sequence[int], *, points: Sequence[Sequence[float]] = (),
                  box: Sequence[float] | None = None, sigma: float = CLICK_SIGMA,
                  offset: Sequence[int] = (0, 0, 0)) -> torch.Tensor:
    """Guidance maps ``[3, *shape]`` float32 of clicks and a box given in voxel coordinates.

    Args:
        shape: window size (X, Y, Z).
        points: ``(x, y, z, label)`` voxel coordinates of the whole volume, label 1 positive, 0 negative.
        box: ``(x0, y0, z0, x1, y1, z1)`` inclusive voxel bounds in the whole volume, or None.
        sigma: click radius (voxels).
        offset: voxel index of the window's first voxel in the whole volume.
    """
    out = torch.zeros((GUIDANCE_CHANNELS, *[int(s) for s in shape]), dtype=torch.float32)
    axes = [torch.arange(int(n), dtype=torch.float32) + float(o) for n, o in zip(shape, offset, strict=True)]
    reach = 3.0 * sigma
    for x, y, z, label in points:
        centre = (float(x), float(y), float(z))
        near = [(a - c).abs() <= reach for a, c in zip(axes, centre, strict=True)]
        if not all(bool(n.any()) for n in near):
            continue  # the click's ball does not reach this window
        d2 = [((a - c) ** 2) for a, c in zip(axes, centre, strict=True)]
        ball = torch.exp(-(d2[0][:, None, None] + d2[1][None, :, None] + d2[2][None, None, :]) / (2 * sigma**2))
        channel = 0 if int(label) else 1
        torch.maximum(out[channel], ball, out=out[channel])
    if box is not None:
        lo, hi = box[:3], box[3:]
        inside = [((a >= float(lo_)) & (a <= float(hi_))).float() for a, lo_, hi_ in zip(axes, lo, hi, strict=True)]
        out[2] = inside[0][:, None, None] * inside[1][None, :, None] * inside[2][None, None, :]
    return out


def network_parts(net, image: torch.Tensor, queries: torch.Tensor, *, gate: bool = True
                  ) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The frozen network's text logit ``[B, 1, X, Y, Z]`` (presence-gated with ``gate``) and decoder
    levels 0-2, without gradient.

    ``queries``: [1, D] one text embedding for every window, or [B, 1, D] one per window.
    """
    with torch.no_grad():
        skips = net.backbone.encode(image)
        q, presence = net.decode_queries(skips, queries)
        decoded = net.backbone.decode(skips)
        del skips
        logit = net.mask_logits(decoded[0], q, 0)
        if gate:
            logit = gate_by_presence(logit, presence)
    return logit.detach(), [d.detach() for d in decoded[:3]]


def prompted_forward(net, head: PromptHead, image: torch.Tensor, queries: torch.Tensor, guidance: torch.Tensor,
                     *, has_text: bool | torch.Tensor, gate: bool = True, also_alone: bool = False) -> torch.Tensor:
    """Logits ``[B, 1, X, Y, Z]`` of one prompt per window: the frozen network, then the head
    (``[B, 2, X, Y, Z]`` with ``also_alone``: channel 1 is the head's answer without the text, from
    the same network pass).

    Args:
        net: the frozen :class:`~sat.model.SATNet` (no gradient flows into it).
        head: the prompt head.
        image: [B, 1, X, Y, Z] windows.
        queries: [1, D] or [B, 1, D] text embeddings (any values where there is no text).
        guidance: [B, 3, X, Y, Z] guidance maps.
        has_text: whether the prompt(s) have text (a bool, or [B]).
        gate: apply the network's presence rule to its text logit.
    """
    flag = torch.as_tensor(has_text, dtype=torch.bool, device=image.device).expand(image.shape[0])
    logit, feats = network_parts(net, image, queries, gate=gate)
    out = head(image, feats, logit, flag, guidance)
    if not also_alone:
        return out
    return torch.cat([out, head(image, feats, logit, torch.zeros_like(flag), guidance)], dim=1)


def save_head(head: PromptHead, directory: str | os.PathLike, *, half: bool = True, extra: dict | None = None) -> Path:
    """Write ``model.safetensors`` (float16 with ``half``) + ``config.json`` (``kind: prompt_head``)."""
    from safetensors.torch import save_file

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    dtype = torch.float16 if half else torch.float32
    state = {k: v.detach().to("cpu", dtype).contiguous() for k, v in head.state_dict().items()}
    atomic_write(out / WEIGHTS_NAME, lambda tmp: save_file(state, tmp, metadata={"format": "pt"}))
    config = {"format_version": FORMAT_VERSION, "kind": "prompt_head", "head": head.config.to_dict(), **(extra or {})}
    text = json.dumps(config, indent=2) + "\n"
    atomic_write(out / CONFIG_NAME, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return out


def load_head(directory: str | os.PathLike, *, device: str | torch.device = "cpu") -> tuple[PromptHead, dict]:
    """Load a head written by :func:`save_head` (eval mode, float32); raises :class:`WeightsError`."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(directory)
    try:
        config = json.loads((folder / CONFIG_NAME).read_text(encoding="utf-8"))
        if config.get("kind") != "prompt_head":
            raise ValueError("config.json is not a prompt head's")
        head = PromptHead(HeadConfig.from_dict(config["head"]))
        state = load_file(str(folder / WEIGHTS_NAME), device=str(device))
        head.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, SafetensorError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsError(f"cannot load the prompt head in {folder} ({first}); re-export it") from exc
    return head.to(device).eval(), config
