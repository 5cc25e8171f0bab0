"""What a guide's head logits change (VISTA3D's merge rule, made local to the clicks).

- **Clicks** change only the error regions they point at: where the head adds voxels to the
  current mask, the added pieces within ``REACH`` model voxels of a positive click are taken;
  where it removes voxels, the removed pieces within ``REACH`` of a negative click are taken;
  everything else keeps the current (automatic) mask, so a click never disturbs the rest of the
  structure. A negative click removes only voxels the current logits are unsure of (``logit <
  SURE``) or that lie within ``NEAR`` model voxels of it: a head that drops the whole structure
  cannot take its confident core with it, and nothing farther than ``REMOVE_WITHIN`` model voxels
  from it (both chosen on the development people, model card).
- **A structure the text missed**: a positive click where the current logit is below ``-SURE`` (the
  text is sure the structure is not there) also takes the piece the head draws at it when it reads
  the clicks without the text (its points-only answer): the head's text reading cannot draw a
  structure whose text logit it sees as absent (model card).
- **A click the head does not follow** (its voxel still on the wrong side after the merge) still
  fixes the ball of ``BRUSH`` model voxels around it, as a brush would: the head may answer a click
  in a confident mistake too weakly to flip it, and the clicked place must not stay wrong. A
  negative ball only takes itself out: the component rule below does not drop what it cuts off.
- **A box** (its first run) replaces the mask inside its region by the head's, and bounds the
  structure: nothing is kept beyond the box and a margin of ``BOX_MARGIN`` model voxels.
- Then the component rule: a one-piece structure keeps its largest component plus every component
  holding a positive click; a structure without text keeps the components holding positive
  clicks, or (box only) the largest one.

Example:
    >>> import torch
    >>> from sat.interactive.guides import Guide
    >>> auto = torch.full((20, 20, 20), -5.0); auto[2:8, 2:8, 2:8] = 5.0
    >>> head = torch.full((20, 20, 20), 5.0)                       # a head that says "everything"
    >>> out = apply_guide(auto, head, (slice(0, 20),) * 3, Guide(clicks=[(15.0, 15.0, 15.0, 1)]),
    ...                   has_text=True, one_piece=False)
    >>> int((out > 0).sum())                                       # the clicked piece joins the mask
    8000
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from sat.interactive.guides import BOX_MARGIN, Guide
from sat.postprocess import keep_components

__all__ = ["BRUSH", "NEAR", "OUTSIDE", "REACH", "REMOVE_WITHIN", "SURE", "apply_guide", "confident_misses"]

OUTSIDE = -20.0  # logit of "not in the mask" where nothing says the structure is
SURE = 4.0  # current logits at least this large are removed only near a negative click
REACH = 2.0  # model voxels around a click whose error pieces it takes
NEAR = 4.0  # model voxels around a negative click where even sure voxels may be removed
REMOVE_WITHIN = 8.0  # model voxels: a negative click removes nothing farther than this
BRUSH = 2.0  # model voxels around a click the head did not follow that the click sets anyway
BRUSHED = 1.0  # logit of a voxel a positive click's brush adds (a negative one's gets OUTSIDE)


def _ball(clicks: Sequence, shape: Sequence[int], radius: float) -> np.ndarray:
    """Indices [N, 3] of the voxels within ``radius`` voxels of any click (clipped to the array:
    a clipped voxel is nearer the click than the offset it came from)."""
    r = int(radius)
    offsets = np.mgrid[-r:r + 1, -r:r + 1, -r:r + 1].reshape(3, -1).T
    ball = offsets[(offsets ** 2).sum(1) <= radius ** 2]
    top = np.asarray(shape) - 1
    found = [np.clip(np.asarray(_voxel(c, shape)) + ball, 0, top) for c in clicks]
    return np.unique(np.concatenate(found), axis=0) if found else np.zeros((0, 3), int)


def _seeds(clicks: Sequence, shape: Sequence[int]) -> list[tuple[int, int, int]]:
    """The voxels within ``REACH`` model voxels of each click: the head answers a click with a blob
    that may sit a voxel or two off it, and a click between voxels still hits its piece."""
    return [tuple(v) for v in _ball(clicks, shape, REACH).tolist()]


def _voxel(click: Sequence, shape: Sequence[int]) -> tuple[int, int, int]:
    """The voxel of a click (nearest, inside the array)."""
    v = np.clip(np.floor(np.asarray(click[:3], np.float64) + 0.5), 0, np.asarray(shape) - 1)
    return tuple(int(x) for x in v)  # type: ignore[return-value]


def _near(clicks: Sequence, shape: Sequence[int], radius: float) -> np.ndarray:
    """Bool mask of the voxels within ``radius`` voxels of any click."""
    near = np.zeros(tuple(shape), bool)
    near[tuple(_ball(clicks, shape, radius).T)] = True
    return near


def _brush(out: torch.Tensor, clicks: Sequence) -> np.ndarray:
    """Set the ball of ``BRUSH`` voxels around each click whose voxel is on the wrong side, in order
    (a later click wins where balls overlap), in place; returns the voxels negative balls took out
    of the mask."""
    erased = np.zeros(tuple(out.shape), bool)
    for c in clicks:
        if (out[_voxel(c, out.shape)] > 0) == bool(c[3]):
            continue
        ball = tuple(_ball([c], out.shape, BRUSH).T)
        at = tuple(torch.from_numpy(i) for i in ball)
        erased[ball] = False if c[3] else (out[at] > 0).numpy()
        out[at] = out[at].clamp(min=BRUSHED) if c[3] else out[at].clamp(max=OUTSIDE)
    return erased


def _box_mask(box: Sequence[int], shape: Sequence[int], margin: int) -> np.ndarray:
    inside = np.zeros(tuple(shape), bool)
    lo = [max(0, b - margin) for b in box[:3]]
    hi = [min(n, b + 1 + margin) for b, n in zip(box[3:], shape, strict=True)]
    inside[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = True
    return inside


def _placed(out: torch.Tensor, new: torch.Tensor, region: tuple[slice, ...]) -> torch.Tensor:
    """``new`` (logits over ``region``) on the whole grid of ``out``, ``OUTSIDE`` elsewhere."""
    placed = torch.full_like(out, OUTSIDE)
    placed[region] = new.to(out.dtype)
    return placed


def _take_pieces(out: torch.Tensor, new: torch.Tensor, region: tuple[slice, ...], clicks: Sequence) -> None:
    """Give ``out`` (in place) the pieces of ``new`` (logits over ``region``) within ``REACH`` of ``clicks``."""
    other = _placed(out, new, region)
    current = (out > 0).numpy()
    take = torch.from_numpy(keep_components((other > 0).numpy(), _seeds(clicks, current.shape), largest=False)
                            & ~current)
    out[take] = other[take]


def confident_misses(logits: torch.Tensor, clicks: Sequence) -> list:
    """The positive clicks where ``logits`` (model space) are below ``-SURE``: the text is sure the
    structure is not there."""
    return [c for c in clicks if c[3] and logits[_voxel(c, logits.shape)] < -SURE]


def apply_guide(logits: torch.Tensor, new: torch.Tensor, region: tuple[slice, ...], guide: Guide, *,
                has_text: bool, one_piece: bool, clicks: Sequence | None = None, replace: bool = False,
                alone: torch.Tensor | None = None) -> torch.Tensor:
    """Model-space logits ``[X, Y, Z]`` of a guided prompt (rules of the module docstring).

    Args:
        logits: the current logits (automatic, or of the previous correction; ignored without text).
        new: the head's logits over ``region``.
        region: model-space slices of ``new``.
        guide: all clicks and the box of the prompt.
        has_text: the prompt has text (else it starts from an empty mask).
        one_piece: the model's one-piece rule applies to the structure.
        clicks: the clicks whose error regions may change (default: all of the guide's).
        replace: take the head's mask in the whole region (a box's first run).
        alone: the head's logits over ``region`` read without the text, needed when
            :func:`confident_misses` finds clicks: each of those takes this answer's piece there.
    """
    out = logits.clone().float() if has_text else torch.full(tuple(logits.shape), OUTSIDE)
    head = _placed(out, new, region)
    clicks = guide.clicks if clicks is None else list(clicks)
    if replace:
        out[region] = head[region]
    else:
        current, proposed = (out > 0).numpy(), (head > 0).numpy()
        negatives = [c for c in clicks if not c[3]]
        added = keep_components(proposed & ~current, _seeds([c for c in clicks if c[3]], current.shape), largest=False)
        removable = current & ~proposed
        if has_text and negatives:
            removable &= (out.numpy() < SURE) | _near(negatives, current.shape, NEAR)
            removable &= _near(negatives, current.shape, REMOVE_WITHIN)
        removed = keep_components(removable, _seeds(negatives, current.shape), largest=False)
        take = torch.from_numpy(added | removed)
        out[take] = head[take]
    lost = confident_misses(logits, clicks) if has_text and alone is not None else []
    if lost:
        _take_pieces(out, alone, region, lost)
    erased = _brush(out, guide.clicks)
    mask = (out > 0).numpy() | erased  # a negative brush must not split off the rest of the structure
    if guide.box is not None:
        mask &= _box_mask(guide.box, mask.shape, BOX_MARGIN)
    seeds = [_voxel(c, mask.shape) for c in guide.positives]
    if has_text:
        kept = keep_components(mask, seeds, largest=True) if one_piece else mask
    else:
        kept = keep_components(mask, seeds, largest=not seeds)
    out[torch.from_numpy((out > 0).numpy() & ~kept)] = OUTSIDE
    return out
