"""Gaussian sliding-window blending whose per-voxel work is done only for present prompts.

Windows are placed by MONAI (``dense_patch_slices`` with MONAI's scan-interval rule) and
weighted by a separable gaussian ``g(x, y, z) = gx(x) gy(y) gz(z)`` (sigma = window / 8 per
axis, each 1D factor floored at ``FLOOR`` so no weight is 0). The blended logit of prompt
``q`` at voxel ``v`` is ``sum_w g_w(v) l_wq(v) / sum_w g_w(v)`` over the windows ``w`` that
contain ``v``, as in MONAI's ``sliding_window_inference`` with this weight map.

With presence gating a window that vetoes prompt ``q`` (presence probability below ``veto``,
1 % by default: :func:`sat.model.network.vetoed`) gives it the constant logit ``p_wq`` (its
presence logit) everywhere. Those windows need no per-voxel work: because the
windows form a grid and ``g`` is separable, ``sum over absent w of p_wq g_w(v)`` is one small
tensor contraction per prompt (grid of presence logits x three per-axis weight profiles),
and the normaliser ``sum_w g_w`` is an outer product of three profiles. Only (window,
prompt) pairs judged present cost a mask product and an accumulation, so the cost of many
prompts grows with how many are present per window, not with how many are asked.

``official=True`` blends as the original SAT does: probabilities (not logits) are averaged
with a gaussian centred on voxel ``size // 2`` of the window (sigma = window / 8, no floor),
without presence gating; the result is returned as logits of those probabilities.

Example:
    >>> import torch
    >>> from sat.model import build_model
    >>> from sat.model.blend import blend
    >>> net = build_model("sat-tiny").eval()
    >>> blend(net, torch.zeros(1, 1, 80, 64, 40), torch.randn(2, 384), overlap=0.25).shape
    torch.Size([2, 80, 64, 40])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.data.utils import dense_patch_slices

from sat.model.lean import lean_forward
from sat.model.network import VETO, SATNet, kept_queries, vetoed

__all__ = ["blend", "gaussian_profile", "scan_interval", "FLOOR"]

FLOOR = 1e-2  # smallest value of each 1D gaussian factor (window corners: FLOOR**3)
SIGMA_SCALE = 0.125


def gaussian_profile(size: int, *, official: bool = False) -> torch.Tensor:
    """[size] float32 1D gaussian (peak 1, sigma = size / 8), floored at ``FLOOR``
    (``official``: centred on ``size // 2``, not floored)."""
    t = torch.arange(size, dtype=torch.float64) - (size // 2 if official else (size - 1) / 2.0)
    g = torch.exp(-(t**2) / (2.0 * (SIGMA_SCALE * size) ** 2))
    return (g if official else g.clamp_(min=FLOOR)).float()


def scan_interval(size: Sequence[int], roi: Sequence[int], overlap: float) -> tuple[int, ...]:
    """Window step per axis (MONAI's rule: ``int(roi * (1 - overlap))``, at least 1; roi if it fills the axis)."""
    return tuple(r if s == r else max(1, int(r * (1 - overlap))) for s, r in zip(size, roi, strict=True))


def _profiles(starts: Sequence[int], size: int, g: torch.Tensor) -> torch.Tensor:
    """[len(starts), size] float32: the 1D weight ``g`` of each window position along one axis,
    divided by the sum over positions (so the 3D outer products sum to 1 at every voxel)."""
    out = torch.zeros((len(starts), size), dtype=torch.float32, device=g.device)
    for i, st in enumerate(starts):
        out[i, st:st + g.numel()] = g
    return out / out.sum(0)


def _window_weight(profiles: list[torch.Tensor], cell: tuple[int, ...], box: tuple[slice, ...]) -> torch.Tensor:
    """[*roi] normalised blending weight of the window at grid ``cell`` covering ``box``."""
    px, py, pz = (p[i, b] for p, i, b in zip(profiles, cell, box, strict=True))
    return px[:, None, None] * py[None, :, None] * pz[None, None, :]


def _absent_sum(grid: torch.Tensor, profiles: list[torch.Tensor]) -> torch.Tensor:
    """sum over windows of grid[a, b, c] * Px[a, x] Py[b, y] Pz[c, z] -> [X, Y, Z] (z first: smallest temporaries)."""
    px, py, pz = profiles
    t = torch.tensordot(grid, pz, dims=([2], [0]))  # [nx, ny, Z]
    t = torch.einsum("abz,by->ayz", t, py)  # [nx, Y, Z]
    return torch.einsum("ayz,ax->xyz", t, px)  # [X, Y, Z]


def _accumulate(out: torch.Tensor, item: tuple, slices: list) -> None:
    """Add one batch's present (window, query) weighted logits into their window boxes of ``out``."""
    indices, (lean, a, b), keep, present = item
    for k, i in enumerate(indices):
        pos = torch.nonzero(present[k][keep]).flatten()
        if not len(pos):
            continue
        box = slices[i]
        if lean:  # a: logits [B, N, ...] of every query, b: weights [B, 1, ...]
            for q in keep[pos].tolist():
                out[(q, *box)].addcmul_(a[k, q], b[k, 0])
            continue
        # a: weighted features [B, C, ...], b: embeddings [B, K, C]: the product of the present rows only
        rows = torch.mm(b[k, pos], a[k].reshape(a.shape[1], -1)).view(len(pos), *a.shape[2:])
        for j, q in enumerate(keep[pos].tolist()):
            out[(q, *box)] += rows[j]


def _forward(model: SATNet, win: torch.Tensor, queries: torch.Tensor, weight: torch.Tensor, *, gate: bool,
             veto: float, lean: bool, official: bool = False):
    """((lean, a, b) as read by :func:`_accumulate`, kept query indices [K], presence logits [B, N]).

    ``official``: ``a`` holds probabilities (all queries, no gating) instead of logits.
    """
    if official:
        if lean:
            out = lean_forward(model, win, queries, slab=16)
            logits, presence = out.logits, out.presence
        else:
            feats, emb, _, presence = model.window_parts(win, queries, gate=False)
            logits = SATNet.mask_logits_from(feats, emb)
        return (True, logits.sigmoid_(), weight), torch.arange(queries.shape[0]), presence
    if not lean:
        feats, emb, keep, presence = model.window_parts(win, queries, weight, gate=gate, veto=veto)
        return (False, feats, emb), keep, presence
    out = lean_forward(model, win, queries, slab=16, gate=gate, veto=veto)
    return (True, out.logits, weight), kept_queries(out.presence, gate=gate, veto=veto), out.presence


def blend(
    model: SATNet,
    image: torch.Tensor,
    queries: torch.Tensor,
    *,
    overlap: float = 0.25,
    sw_batch_size: int = 1,
    gate: bool = True,
    veto: float = VETO,
    lean: bool = False,
    dtype: torch.dtype = torch.float32,
    progress: bool = False,
    official: bool = False,
) -> torch.Tensor:
    """Blended logits ``[N, X, Y, Z]`` (``dtype``) of every query over an image at least one window large.

    Args:
        model: a SATNet in eval mode.
        image: [1, 1, X, Y, Z] float32 with every size >= the model's ``patch_size``.
        queries: [N, text_dim] text embeddings.
        overlap: window overlap fraction in [0, 1).
        sw_batch_size: windows per network forward.
        gate: presence gating (see this module's docstring); False: every window computes every query.
        veto: presence probability under which a window vetoes a query (with ``gate``).
        lean: run windows through :func:`sat.model.lean.lean_forward`.
        dtype: dtype of the accumulated output (contributions are normalised before they are
            added, so float16 keeps its precision).
        progress: show a progress bar over window batches.
        official: blend probabilities as the original SAT (see this module's docstring).
    """
    gate = gate and not official
    size = tuple(int(s) for s in image.shape[2:])
    roi = tuple(int(r) for r in model.config.patch_size)
    n, device = queries.shape[0], image.device
    slices = dense_patch_slices(size, roi, scan_interval(size, roi, overlap))
    starts = [sorted({int(s[a].start) for s in slices}) for a in range(3)]
    cells = [tuple(starts[a].index(int(s[a].start)) for a in range(3)) for s in slices]
    # per axis [window positions, size]: each position's 1D weight divided by the axis' sum over
    # positions; the normalised 3D weight of a window is the outer product of its three rows
    profiles = [_profiles(st, n_a, gaussian_profile(r, official=official).to(device))
                for st, n_a, r in zip(starts, size, roi, strict=True)]
    out = torch.zeros((n, *size), dtype=dtype, device=device)
    absent = torch.zeros((n, *(len(st) for st in starts)), dtype=torch.float32, device=device)
    batches = [range(i, min(i + sw_batch_size, len(slices))) for i in range(0, len(slices), sw_batch_size)]
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, desc="windows", unit="batch")
    for indices in batches:
        win = torch.cat([image[(slice(None), slice(None), *slices[i])] for i in indices])
        w = torch.stack([_window_weight(profiles, cells[i], slices[i]) for i in indices])[:, None]
        part, keep, presence = _forward(model, win, queries, w, gate=gate, veto=veto, lean=lean, official=official)
        present = ~vetoed(presence, veto) if gate else torch.ones_like(presence, dtype=torch.bool)
        for b, i in enumerate(indices):
            absent[(slice(None), *cells[i])] = torch.where(present[b], 0.0, presence[b])
        _accumulate(out, (indices, part, keep, present), slices)
    for q in range(n):
        if bool(absent[q].any()):
            out[q] += _absent_sum(absent[q], profiles)
    if official:  # blended probabilities -> their logits, in place
        out.logit_(eps=torch.finfo(dtype).eps)
    return out
