"""Sliding-window inference of a SATNet over a whole model-space volume.

The image is encoded once per window for ALL queries; MONAI's ``sliding_window_inference``
places the windows and blends their logits with a separable gaussian weight
(sigma = window / 8 per axis, each 1D factor floored at ``FLOOR``); large outputs are
stored in float16 (blended in float32 in passes over groups of queries).

Presence gating rule: for every window and query, when the presence logit
``p`` says the structure is very unlikely there (presence probability below
``presence_veto``, 1 % by default: :func:`sat.model.network.vetoed`) every voxel of that window gets
the logit ``p`` (the window votes "absent" everywhere, and the query's mask
product is skipped when every window of the batch vetoes it); windows that see the
structure keep their logits. A prompt for a structure
outside the field of view therefore gives an empty mask.

Large windows (full-resolution activations over ``LEAN_BYTES``) run through
:func:`sat.model.lean.lean_forward` (same result, a fraction of the memory).

Example:
    >>> import torch
    >>> from sat.model import build_model, predict
    >>> net = build_model("sat-tiny").eval()
    >>> predict(net, torch.zeros(1, 1, 50, 40, 30), torch.randn(3, 384)).shape
    torch.Size([3, 50, 40, 30])
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from monai.inferers import sliding_window_inference

from sat.errors import InputError
from sat.model.config import ModelConfig
from sat.model.lean import lean_forward
from sat.model.network import VETO, SATNet, veto_logit, vetoed

__all__ = ["check_coverage", "gate_by_presence", "gaussian_profile", "predict", "sw_batch_size_for",
           "window_memory_bytes"]

log = logging.getLogger(__name__)

_FP16_OUTPUT_BYTES = 1 << 30  # accumulate in float16 when a float32 output would exceed 1 GiB
CPU_MAX_WINDOWS = 4  # windows per batch on CPU: more only touches fresh memory (page faults)
LEAN_BYTES = 1 << 28  # use the slab-wise forward when one full-resolution activation exceeds 256 MiB
MIN_MODEL_VOXELS = 2  # fewer model voxels along an axis: the model sees a plane, not a volume (error)
THIN_WINDOW_FRACTION = 0.25  # fewer model voxels than this fraction of the window along an axis: warning
FLOOR = 1e-2  # smallest value of each 1D gaussian weight factor (window corners: FLOOR**3)
_AXIS_NAMES = {"R": "left-right", "L": "left-right", "A": "anterior-posterior", "P": "anterior-posterior",
               "S": "superior-inferior", "I": "superior-inferior"}


def gate_by_presence(logits: torch.Tensor, presence: torch.Tensor, veto: float = VETO) -> torch.Tensor:
    """Apply the presence rule: logits [B, N, ...], presence logits [B, N] -> gated logits (same shape).

    Where the window vetoes the query (:func:`sat.model.network.vetoed`) every voxel gets
    ``presence``; elsewhere unchanged.
    """
    p = presence.reshape(*presence.shape, *([1] * (logits.ndim - 2))).to(logits.dtype)
    return torch.where(vetoed(p, veto), p.expand_as(logits), logits)


def window_memory_bytes(config: ModelConfig, n_queries: int, *, window: Sequence[int] | None = None) -> int:
    """Rough peak memory (bytes) of one window through the network with ``n_queries`` queries."""
    shape = tuple(window or config.patch_size)
    vox = math.prod(shape)
    feats = sum(w * vox / 8**i for i, w in enumerate(config.widths))
    # skips + decoder features + conv/norm temporaries at the finest level, float32
    activations = 4 * (2 * feats + 4 * config.widths[0] * vox)
    logits = 4 * 2 * n_queries * vox
    return int(activations + logits)


def sw_batch_size_for(
    config: ModelConfig, n_queries: int, *, memory_gb: float, window: Sequence[int] | None = None
) -> int:
    """Largest number of windows per batch whose estimated peak fits ``memory_gb`` (at least 1)."""
    per_window = window_memory_bytes(config, n_queries, window=window)
    return max(1, int(memory_gb * 2**30 // per_window))


def check_coverage(record, patch_size: Sequence[int], *, name: str = "image") -> list[str]:
    """Check that an input is thick enough, along every axis, for the model to segment it.

    The model works on a grid of ``record.target_spacing`` voxels in windows of ``patch_size``;
    an input thinner than a window is padded with background. Two thresholds, per axis:

    - **error** when the model grid has fewer than :data:`MIN_MODEL_VOXELS` (2) voxels along an
      axis, i.e. the input spans less than 1.5 model voxels (under 4.5 mm at 3 mm): the model sees
      a single plane, a 2D image, not a volume. Measured
      (``benchmarks/thin_inputs.py``) with the shipped ``sat-tiny`` (3 mm grid, 32-voxel window
      depth) on slabs of a 1 mm re-slicing of the abdominal CT example: 2-4 slices (one model
      voxel) give liver Dice 0.39-0.41 and spleen 0.00; 5-6 slices (two voxels) 0.81 and
      0.86-0.88; the whole volume 0.955 and 0.96.
    - **warning** (returned, for the caller to log and record) when it has fewer voxels than
      :data:`THIN_WINDOW_FRACTION` (a quarter) of the window along that axis: over three quarters
      of every window is then padding, the anatomical context the model learnt from is missing
      and accuracy drops (same measurement, liver: 0.81-0.93 from 2 to 6 voxels, below a quarter
      of the window; 0.94-0.955 from 8 voxels up).

    Args:
        record: the :class:`sat.preprocess.Record` of the input (from ``standardize`` or ``plan``).
        patch_size: the model's window, in model axes.
        name: the input's name, for messages.

    Returns:
        One-line warnings, without the input's name (empty when the input is thick enough).

    Raises:
        InputError: an axis spans fewer than 2 model voxels; says how many slices to give.

    Example:
        >>> import numpy as np
        >>> from sat import io, preprocess
        >>> slab = io.load((np.zeros((100, 100, 4)), np.diag([1.0, 1.0, 3.0, 1.0])), modality="ct")
        >>> len(check_coverage(preprocess.plan(slab, spacing=3.0), (64, 64, 32)))
        1
    """
    notes = []
    original = np.asarray(record.original_affine, dtype=np.float64)
    for axis, (start, stop) in enumerate(record.crop_box):
        model_axis = int(record.ornt[axis][0])
        voxels, window = int(record.resampled_shape[axis]), int(patch_size[model_axis])
        step, grid = float(np.linalg.norm(original[:3, axis])), float(record.target_spacing[model_axis])
        slices = int(stop - start)
        where = (f"the image spans {slices * step:.1f} mm along its "
                 f"{_AXIS_NAMES.get(record.orientation[model_axis], 'array')} axis (array axis {axis}: "
                 f"{slices} slices of {step:.2f} mm)")
        if voxels < MIN_MODEL_VOXELS:
            need = math.ceil((MIN_MODEL_VOXELS - 0.5) * grid / step - 1e-9)
            raise InputError(f"{name}: {where}, under {MIN_MODEL_VOXELS} voxels of the model's {grid:g} mm grid, so the "
                             f"model would see a single plane; give at least {need} slices "
                             f"({need * step:.1f} mm) along that axis")
        if voxels < THIN_WINDOW_FRACTION * window:
            notes.append(f"{where}: {voxels} voxels of the model's {grid:g} mm grid, under a quarter of its "
                         f"{window}-voxel window; thin slabs are segmented less accurately, give more slices "
                         "if you can")
    return notes


def _as_5d(image: torch.Tensor) -> torch.Tensor:
    if not isinstance(image, torch.Tensor):
        image = torch.as_tensor(image)
    while image.ndim < 5:
        image = image.unsqueeze(0)
    if image.ndim != 5 or image.shape[:2] != (1, 1):
        raise InputError(f"image must be [1, 1, X, Y, Z] (or [X, Y, Z]), got {tuple(image.shape)}")
    if not torch.isfinite(image).all():
        raise InputError("image contains NaN or infinite values; clean or re-standardize it first")
    return image.float()


def _pad_to(image: torch.Tensor, roi: Sequence[int], *, official: bool = False) -> tuple[torch.Tensor, tuple[slice, ...]]:
    """Pad (with the image minimum, i.e. background; ``official``: with 0 at the high end, as the
    original SAT) to at least ``roi``; return the crop back."""
    size = image.shape[2:]
    if all(s >= r for s, r in zip(size, roi, strict=True)):
        return image, tuple(slice(None) for _ in size)
    pads, crop = [], []
    for s, r in zip(size, roi, strict=True):
        diff = max(r - s, 0)
        before = 0 if official else diff // 2
        pads.append((before, diff - before))
        crop.append(slice(before, before + s))
    flat = [p for pair in reversed(pads) for p in pair]
    return F.pad(image, flat, value=0.0 if official else float(image.min())), tuple(crop)


def gaussian_profile(size: int, *, official: bool = False) -> torch.Tensor:
    """[size] float32 1D gaussian (peak 1, sigma = size / 8), floored at ``FLOOR``
    (``official``: centred on ``size // 2`` and not floored, as the original SAT)."""
    t = torch.arange(size, dtype=torch.float64) - (size // 2 if official else (size - 1) / 2.0)
    g = torch.exp(-(t**2) / (2.0 * (size / 8) ** 2))
    return (g if official else g.clamp_(min=FLOOR)).float()


def _weight_map(roi: Sequence[int], *, official: bool) -> torch.Tensor:
    """[*roi] blending weight of a window: the outer product of the three 1D profiles."""
    gx, gy, gz = (gaussian_profile(r, official=official) for r in roi)
    return gx[:, None, None] * gy[None, :, None] * gz[None, None, :]


def _window_predictor(model: SATNet, queries: torch.Tensor, *, gate: bool, veto: float, lean: bool,
                      official: bool):
    """The per-window function MONAI calls: windows [B, 1, *roi] -> logits [B, N, *roi] (gated), or
    probabilities for ``official``."""

    def run(window: torch.Tensor) -> torch.Tensor:
        if lean:
            out = lean_forward(model, window, queries, slab=16, gate=gate, veto=veto)
            logits, presence = out.logits, out.presence
        else:  # the mask product only for the queries some window of the batch does not veto; the
            # others are vetoed by every window, so the gating below gives them their presence logit
            feats, emb, keep, presence = model.window_parts(window, queries, gate=gate, veto=veto)
            logits = feats.new_empty((window.shape[0], queries.shape[0], *window.shape[2:]))
            logits[:, keep] = SATNet.mask_logits_from(feats, emb)
        if official:
            return logits.sigmoid_()
        return gate_by_presence(logits, presence, veto) if gate else logits

    return run


def predict(
    model: SATNet,
    image: torch.Tensor,
    queries: torch.Tensor,
    *,
    overlap: float = 0.25,
    sw_batch_size: int | None = None,
    memory_gb: float = 2.0,
    accumulate_dtype: torch.dtype | None = None,
    presence_gating: bool = True,
    presence_veto: float = VETO,
    lean: bool | None = None,
    progress: bool = False,
    official_blend: bool = False,
) -> torch.Tensor:
    """Logits of every query over a whole model-space volume.

    Args:
        model: a SATNet (switched to eval mode for the call).
        image: [1, 1, X, Y, Z] (or [X, Y, Z]) float32 standardized image in model space.
        queries: [N, text_dim] text embeddings (computed once per call by the caller).
        overlap: window overlap fraction in [0, 1).
        sw_batch_size: windows per forward; default from ``memory_gb`` (at most ``CPU_MAX_WINDOWS``
            on CPU).
        memory_gb: memory budget used to choose ``sw_batch_size``.
        accumulate_dtype: dtype of the output; default float16 when a float32 output would exceed
            1 GiB, else float32. Blending is always in float32: an output over 1 GiB is blended in
            passes over groups of queries (each pass runs the windows again).
        presence_gating: apply the presence rule of this module's docstring.
        presence_veto: the rule's presence probability threshold, in (0, 1).
        lean: use the slab-wise forward (default: when a full-resolution activation of one
            window exceeds ``LEAN_BYTES``).
        progress: show a progress bar over windows.
        official_blend: pad, weight and blend as the original SAT (zero padding at the high end,
            probabilities averaged with a gaussian centred on voxel ``size // 2``, no floor, no
            presence gating); returned as the logits of those probabilities.

    Returns:
        [N, X, Y, Z] logits (float32 or ``accumulate_dtype``) on the input grid.
    """
    image = _as_5d(image)
    if queries.ndim != 2:
        raise InputError(f"queries must be [N, D], got {tuple(queries.shape)}; stack the prompt embeddings")
    if not 0 <= overlap < 1:
        raise InputError(f"overlap must be in [0, 1), got {overlap}")
    veto_logit(presence_veto)  # validates the threshold before any work
    config = model.config
    roi = tuple(config.patch_size)
    n = queries.shape[0]
    padded, crop = _pad_to(image, roi, official=official_blend)
    per_query = 4 * padded[0, 0].numel()  # bytes of one float32 output map
    if accumulate_dtype is None:
        accumulate_dtype = torch.float16 if n * per_query > _FP16_OUTPUT_BYTES else torch.float32
    chunk = max(1, min(n, _FP16_OUTPUT_BYTES // per_query))  # queries blended (in float32) per pass
    device = next(model.parameters()).device
    if sw_batch_size is None:
        sw_batch_size = sw_batch_size_for(config, n, memory_gb=memory_gb)
        if device.type == "cpu":
            sw_batch_size = min(sw_batch_size, CPU_MAX_WINDOWS)
    if lean is None:
        lean = 4 * config.widths[0] * math.prod(roi) > LEAN_BYTES
    padded = padded.to(device)
    queries = queries.to(device=device, dtype=torch.float32)

    weight = _weight_map(roi, official=official_blend).to(device)
    out = None
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for lo in range(0, n, chunk):  # one pass unless a float32 output would exceed _FP16_OUTPUT_BYTES
                run = _window_predictor(model, queries[lo:lo + chunk], gate=presence_gating and not official_blend,
                                        veto=presence_veto, lean=lean, official=official_blend)
                part = sliding_window_inference(padded, roi, sw_batch_size, run, overlap=overlap,
                                                roi_weight_map=weight, progress=progress)[0]
                if official_blend:  # blended probabilities -> their logits, in place
                    part.logit_(eps=torch.finfo(part.dtype).eps)
                if chunk == n:
                    out = part.to(accumulate_dtype)
                    break
                if out is None:
                    out = torch.empty((n, *part.shape[1:]), dtype=accumulate_dtype, device=part.device)
                out[lo:lo + chunk] = part
    finally:
        model.train(was_training)
    log.debug("predict: %d queries, %s voxels, sw_batch_size=%d", n, tuple(image.shape[2:]), sw_batch_size)
    return out[(slice(None), *crop)].clone() if padded is not image else out
