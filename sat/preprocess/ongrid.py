"""Model-space decisions mapped exactly onto the input grid (nearest), without full-size temporaries.

Used by :mod:`sat.api`: threshold the per-prompt logits, resolve overlaps by highest
probability, invert the label map once, and keep each mask in model space until accessed.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from sat.postprocess import bounding_box, largest_component
from sat.preprocess.grid import nearest_indices

log = logging.getLogger(__name__)

__all__ = ["probabilities_on_input_grid", "to_input_grid"]


def to_input_grid(logits: Sequence[torch.Tensor | Sequence[torch.Tensor]], plans: Sequence[Any], record,
                  threshold: float, largest: Sequence[bool | Sequence[bool]] | None = None):
    """Threshold in model space, resolve overlaps by highest probability, invert (nearest) to the input grid.

    ``logits[i]``: prompt ``i``'s model-space logits ``[X', Y', Z']``, or a tuple of them (its
    members: the mask is their union; an empty tuple gives an empty mask). ``largest[i]`` (a bool,
    or one per member) keeps only the largest connected component of that mask (:mod:`sat.postprocess`)
    before the union and before overlaps are resolved: a union is exactly the union of its members'
    masks as each would be segmented alone.

    Nearest inversion is exact (each input voxel takes the decision of the model voxel that
    contains its centre, as ``preprocess.invert(mode="nearest")``, so masks and labelmap agree
    voxel for voxel) and cheap: the labelmap (uint8, uint16 from 256 prompts) is the only
    array on the input grid; masks stay in model space (voxel counts computed there) and are
    gathered onto the input grid, inside their bounding box, only when accessed.

    Returns:
        ``({prompt: lazy mask}, labelmap [*record.original_shape])``.
    """
    masks, model_labels = _threshold_and_label(logits, threshold, largest, shape=record.model_shape)
    lookup = _NearestLookup.from_record(record)
    labelmap = lookup.gather(model_labels, tuple(slice(0, int(n)) for n in record.original_shape))
    crops = {plan.prompt: _LazyMask(mask, lookup) for plan, mask in zip(plans, masks, strict=True)}
    return crops, labelmap


def _as_numpy(logit: torch.Tensor) -> np.ndarray:
    return logit.detach().to(device="cpu", dtype=torch.float32).numpy()  # numpy's float16 is slow


def _member_mask(x: np.ndarray, cut: np.float32, one_piece: bool) -> np.ndarray:
    mask = x > cut
    return largest_component(mask) if one_piece and mask.any() else mask


def _prompt_mask(parts: Sequence[torch.Tensor], flags: Sequence[bool], cut: np.float32,
                 shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray | None, bool]:
    """(mask, score, restrict) of one prompt: the union of its members' masks; ``score`` is the logit
    that competes for the labelmap (a union: the best member logit inside that member's own mask);
    ``restrict``: the labelmap must be limited to ``mask`` (the score may exceed the cut outside it)."""
    if len(parts) == 1:
        x = _as_numpy(parts[0])
        return _member_mask(x, cut, flags[0]), x, flags[0]
    mask = np.zeros(shape, dtype=bool)
    score = np.full(shape, -np.inf, dtype=np.float32)
    for logit, one_piece in zip(parts, flags, strict=True):
        x = _as_numpy(logit)
        member = _member_mask(x, cut, one_piece)
        mask |= member
        np.copyto(score, x, where=member & (x > score))
    return mask, (score if mask.any() else None), False


def _threshold_and_label(logits: Sequence[torch.Tensor | Sequence[torch.Tensor]], threshold: float,
                         largest: Sequence[bool | Sequence[bool]] | None = None, *,
                         shape: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Model-space masks ``[N, X', Y', Z']`` bool and labelmap (1..N, most probable prompt; ties: first).

    ``logits[i]``: prompt ``i``'s logits, or a tuple of its members' logits; ``largest[i]`` (a bool, or
    one per member): keep only the largest connected component (of each member). ``shape``: the model
    grid (default: the first logits' shape). Plain numpy, one prompt at a time (single-threaded: no
    thread hand-offs on a busy CPU).
    """
    parts = [tuple(x) if isinstance(x, (tuple, list)) else (x,) for x in logits]
    flags = []
    for members, keep in zip(parts, [False] * len(parts) if largest is None else largest, strict=True):
        flags.append(tuple(keep) if isinstance(keep, (tuple, list)) else (bool(keep),) * len(members))
    shape = tuple(int(n) for n in (shape if shape is not None else next(m[0].shape for m in parts if m)))
    cut = np.float32(math.log(threshold / (1.0 - threshold)))  # sigmoid(x) > t  <=>  x > logit(t)
    masks = np.zeros((len(parts), *shape), dtype=bool)
    labels = np.zeros(shape, dtype=np.uint8 if len(parts) < 256 else np.uint16)
    best = np.full(shape, cut, dtype=np.float32)  # only voxels above the threshold can be labelled
    win = np.empty(shape, dtype=bool)
    for value, (members, one_piece) in enumerate(zip(parts, flags, strict=True), start=1):
        if not members:
            continue
        masks[value - 1], score, restrict = _prompt_mask(members, one_piece, cut, shape)
        if score is None or not masks[value - 1].any():
            continue
        np.greater(score, best, out=win)  # strictly: on ties the earlier prompt keeps the voxel
        if restrict:  # otherwise win lies inside the mask already (best >= the threshold's logit)
            win &= masks[value - 1]
        np.copyto(best, score, where=win)
        np.copyto(labels, value, where=win, casting="unsafe")
    return masks, labels


class _NearestLookup:
    """For each input axis: the model axis it comes from and the model index of every input voxel.

    Computed from the preprocessing record alone: inverting is a crop, a nearest resize per
    axis and a flip/permutation, so the model voxel an input voxel reads is separable: one
    1D index array per input axis (``-1`` outside a crop), exactly what
    ``preprocess.invert(mode="nearest")`` does, without any array on the input grid.
    Gathers fill their output plane by plane, so their only full-size array is the output.
    """

    def __init__(self, axes: list[int], index: list[np.ndarray]) -> None:
        self.axes, self.index = axes, index  # index: intp per input axis, -1 outside a crop
        self._counts: list[np.ndarray] | None = None  # per model axis: input voxels per model index

    @classmethod
    def from_record(cls, record) -> _NearestLookup:
        """The lookup of a :class:`sat.preprocess.Record` (same mapping as its ``invert``)."""
        ornt = np.asarray(record.ornt)
        axes, index = [], []
        for a in range(3):
            k, flip = int(ornt[a, 0]), ornt[a, 1] < 0
            (start, stop), n_model = record.crop_box[a], int(record.resampled_shape[a])
            inside = nearest_indices(n_model, int(stop) - int(start))
            idx = np.full(int(record.original_shape[a]), -1, dtype=np.intp)
            idx[int(start):int(stop)] = n_model - 1 - inside if flip else inside
            axes.append(k)
            index.append(idx)
        return cls(axes, index)

    def gather(self, model_array: np.ndarray, box: tuple[slice, ...], *, out: np.ndarray | None = None) -> np.ndarray:
        """``model_array`` sampled at the input voxels of ``box`` (0 outside a crop).

        ``out``: a zeroed array of the box's shape to fill (e.g. a view of a full-size array).
        """
        if out is None:
            out = np.zeros(tuple(s.stop - s.start for s in box), dtype=model_array.dtype)
        ii = [self.index[a][box[a]] for a in range(3)]
        inner = [np.flatnonzero(i >= 0) for i in ii]  # a crop is contiguous: one run per axis
        if any(i.size == 0 for i in inner):
            return out
        lo, hi = [int(i[0]) for i in inner], [int(i[-1]) + 1 for i in inner]
        rows, cols, deps = (ii[a][lo[a]:hi[a]] for a in range(3))
        k0, k1, k2 = self.axes
        view = out[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
        starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])  # runs of rows reading one model plane
        for r0, r1 in zip(starts, np.r_[starts[1:], rows.size], strict=True):
            plane = np.take(model_array, rows[r0], axis=k0)  # model axes k1, k2 in increasing order
            plane = plane.take(cols, axis=int(k1 > k2)).take(deps, axis=int(k2 > k1))
            view[r0:r1] = plane if k1 < k2 else plane.T
        return out

    def box(self, mask: np.ndarray) -> tuple[slice, ...] | None:
        """Input-grid bounding box of the voxels reading a model-space bool mask (None: empty)."""
        model_box = bounding_box(mask)
        if model_box is None:
            return None
        box = []
        for a, k in enumerate(self.axes):
            lo, hi = model_box[k].start, model_box[k].stop - 1
            sel = np.flatnonzero((self.index[a] >= lo) & (self.index[a] <= hi))
            if sel.size == 0:
                return None
            box.append(slice(int(sel[0]), int(sel[-1]) + 1))
        return tuple(box)

    def count(self, mask: np.ndarray) -> int:
        """Exact number of input voxels in the inverted mask, computed in model space (inside its box)."""
        box = bounding_box(mask)
        if box is None:
            return 0
        if self._counts is None:
            self._counts = [np.empty(0, np.int64)] * 3
            for a, k in enumerate(self.axes):
                idx = self.index[a]
                self._counts[k] = np.bincount(idx[idx >= 0], minlength=mask.shape[k]).astype(np.int64)
        counts = [c[b] for c, b in zip(self._counts, box, strict=True)]
        inside = mask[box]
        if all(bool((c == 1).all()) for c in counts):  # each model voxel is one input voxel
            return int(np.count_nonzero(inside))
        # sum_ijk m_ijk c_i c_j c_k as three matrix products (exact: small integer sums, float64 after the first)
        t = inside.reshape(-1, inside.shape[2]).astype(np.float32) @ counts[2].astype(np.float32)
        t = t.reshape(inside.shape[:2]).astype(np.float64) @ counts[1].astype(np.float64)
        return int(round(float(t @ counts[0].astype(np.float64))))

    def paint(self, mask: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        """The full input-grid bool mask (gathered inside its bounding box only)."""
        out = np.zeros(shape, dtype=bool)
        box = self.box(mask)
        if box is not None:
            self.gather(mask, box, out=out[box])  # in place: no box-sized temporary
        return out


class _LazyMask:
    """A mask kept in model space; the input-grid array is built on access (exact, see _NearestLookup)."""

    __slots__ = ("mask", "lookup", "voxels")

    def __init__(self, mask: np.ndarray, lookup: _NearestLookup) -> None:
        self.mask, self.lookup = mask, lookup
        self.voxels = lookup.count(mask)

    def full(self, shape: tuple[int, ...]) -> np.ndarray:
        return self.lookup.paint(self.mask, shape)


def probabilities_on_input_grid(logits: list, plans: Sequence[Any], record) -> dict[str, np.ndarray]:
    """Prompt -> float32 probabilities on the input grid (sigmoid in model space, nearest inversion:
    the same model voxel decides a voxel's mask and probability; 0 outside a crop).

    ``logits`` holds one tensor, or one tuple of member tensors, per plan: a union's probability
    is its most probable member's; a plan with no member (an empty answer) is 0 everywhere.
    """
    from sat.preprocess import invert

    out = {}
    for plan, logit in zip(plans, logits, strict=True):
        members = (logit,) if isinstance(logit, torch.Tensor) else tuple(logit)
        if not members:
            out[plan.prompt] = np.zeros(tuple(record.original_shape), np.float32)
            continue
        top = torch.stack([m.detach().to(device="cpu", dtype=torch.float32) for m in members]).amax(0)
        out[plan.prompt] = invert(torch.sigmoid(top).numpy(), record, mode="nearest").astype(np.float32, copy=False)
    return out
