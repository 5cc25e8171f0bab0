"""Which trained structure do points or a box alone point at?

Before the prompt head runs on a structure given without text, the network segments every
concept it was trained on inside the guide's region, and each concept is scored against the
guide: the mean probability at the positive clicks minus the mean at the negative ones, and the
overlap (intersection over union) of the box with the box around the concept's mask, which
stays high when a user draws the box a little loose, and the share of the mask inside the box.
Of the concepts that agree well enough (:data:`MIN_CLICK_SCORE`, :data:`MIN_BOX_IOU`,
:data:`MIN_INSIDE`), the one with the highest click score plus the share of the box its mask
fills is taken (a long structure such as the colon may span a large organ's box; the organ
fills it); the structure is then segmented like that concept's text prompt steered by the same
points and box (the label records the concept read).
Otherwise the head works from the guide alone: an unknown structure (a tumour the model never
learnt) is outlined from the clicks and box only.

Example:
    >>> seg = model.segment("ct.nii.gz", box=(40, -80, 60, 120, 10, 140))   # doctest: +SKIP
    >>> seg.labels[1].concept, seg.labels[1].note                          # doctest: +SKIP
    ('liver', "given by a box; read as 'liver' (box overlap 0.81, box fill 0.31, inside 0.97)")
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import torch

from sat.interactive.guides import Guide

log = logging.getLogger(__name__)

__all__ = ["MIN_BOX_IOU", "MIN_CLICK_SCORE", "MIN_INSIDE", "Scores", "read_concept", "score_concepts"]

MIN_CLICK_SCORE = 0.5  # mean probability at positive clicks minus at negative clicks
# intersection over union of the box with the concept's box: 0.17 for a 50 mm structure in a box
# 20 mm loose on every side; a small structure inside a box drawn around a large one stays below
MIN_BOX_IOU = 0.15
MIN_INSIDE = 0.8  # share of a concept's mask inside the box: a box is drawn around all of its structure
TAIL = 0.005  # share of a mask's voxels left out at each end of each axis: stray specks do not stretch its box


def _mask_boxes(masks: np.ndarray) -> np.ndarray:
    """Boxes ``[N, 6]`` (lo, hi, inclusive; -1 when empty) of bool masks ``[N, X, Y, Z]``, each
    axis trimmed of :data:`TAIL` of the mask's voxels at both ends."""
    n = len(masks)
    out = np.full((n, 6), -1, np.int64)
    for axis in range(3):
        other = tuple(a for a in (1, 2, 3) if a != axis + 1)
        cum = np.cumsum(masks.sum(axis=other), axis=1)  # [N, size]
        total = cum[:, -1:]
        out[:, axis] = np.argmax(cum > TAIL * total, axis=1)
        out[:, axis + 3] = np.argmax(cum >= (1 - TAIL) * total, axis=1)
    out[masks.reshape(n, -1).sum(1) == 0] = -1
    return out


def _box_overlap(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Intersection over union ``[N]`` of one inclusive box ``[6]`` with boxes ``[N, 6]`` (0 for -1 rows)."""
    lo = np.maximum(box[:3], boxes[:, :3])
    hi = np.minimum(box[3:], boxes[:, 3:])
    inter = np.prod(np.clip(hi - lo + 1, 0, None), axis=1)
    size = np.prod(boxes[:, 3:] - boxes[:, :3] + 1, axis=1)
    union = np.prod(box[3:] - box[:3] + 1) + size - inter
    return np.where(boxes[:, 0] < 0, 0.0, inter / np.maximum(union, 1))


@dataclasses.dataclass(frozen=True)
class Scores:
    """How well each of N concepts agrees with a guide (None: the guide has no clicks / no box)."""

    click: np.ndarray | None  # [N] mean probability at the positive clicks minus at the negative ones
    overlap: np.ndarray | None  # [N] intersection over union of the box with the box of each mask
    fill: np.ndarray | None  # [N] share of the box each mask fills
    inside: np.ndarray | None  # [N] share of each mask inside the box

    def agree(self) -> np.ndarray:
        """[N] bool: the concepts agreeing well enough with every part of the guide."""
        ok = np.ones(len(self.click if self.click is not None else self.overlap), bool)
        if self.click is not None:
            ok &= self.click >= MIN_CLICK_SCORE
        if self.overlap is not None:
            ok &= (self.overlap >= MIN_BOX_IOU) & (self.inside >= MIN_INSIDE)
        return ok

    def best(self) -> int | None:
        """Index of the agreeing concept with the highest click score plus box fill, or None."""
        agree = self.agree()
        if not agree.any():
            return None
        rank = sum(v for v in (self.click, self.fill) if v is not None)
        return int(np.argmax(np.where(agree, rank, -np.inf)))

    def describe(self, i: int) -> str:
        """Concept ``i``'s scores in words, for the label's note."""
        parts = [("click score", self.click), ("box overlap", self.overlap), ("box fill", self.fill),
                 ("inside", self.inside)]
        return ", ".join(f"{name} {v[i]:.2f}" for name, v in parts if v is not None)


def score_concepts(probs: np.ndarray, guide: Guide, offset) -> Scores:
    """The :class:`Scores` of concept probabilities ``probs [N, *region]`` (the region starts at
    model voxel ``offset``) against ``guide``."""
    click = overlap = fill = inside = None
    local = [tuple(int(np.clip(np.floor(v - o + 0.5), 0, n - 1)) for v, o, n in zip(c[:3], offset, probs.shape[1:],
                                                                                      strict=True)) + (c[3],)
             for c in guide.clicks]
    if local:
        pos = [probs[(slice(None), *c[:3])] for c in local if c[3]]
        neg = [probs[(slice(None), *c[:3])] for c in local if not c[3]]
        click = (np.mean(pos, axis=0) if pos else 0.0) - (np.mean(neg, axis=0) if neg else 0.0)
        click = np.broadcast_to(np.asarray(click, np.float64), (probs.shape[0],))
    if guide.box is not None:
        box = np.asarray(guide.box, np.int64) - np.tile(np.asarray(offset, np.int64), 2)
        masks = probs > 0.5
        overlap = _box_overlap(box, _mask_boxes(masks))
        lo, hi = np.maximum(box[:3], 0), box[3:] + 1
        voxels = masks[:, lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]].reshape(len(masks), -1).sum(1)
        fill = voxels / float(np.prod(box[3:] - box[:3] + 1))
        inside = voxels / np.maximum(masks.reshape(len(masks), -1).sum(1), 1)
    return Scores(click, overlap, fill, inside)


def read_concept(segmenter, image: torch.Tensor, guide: Guide, region: tuple[slice, ...], plan, *,
                 modality: str | None):
    """``plan`` (a ``"region"`` plan) with the trained concept the guide points at, if one agrees
    well enough; else ``plan`` unchanged."""
    from sat.model import predict

    if not segmenter.concepts:
        return plan
    plans = segmenter.trained_plans()
    texts = [p.texts[0] for p in plans]
    net = segmenter.model
    device = next(net.parameters()).device
    queries = segmenter.queries(texts, modality).to(device)
    with torch.inference_mode():
        logits = predict(net, image[region].float()[None, None].to(device), queries)
    probs = torch.sigmoid(logits.float()).cpu().numpy()
    scores = score_concepts(probs, guide, [s.start for s in region])
    best = scores.best()
    if best is None:
        log.info("%r: no trained structure agrees with its points/box; outlined from them alone", plan.prompt)
        return plan
    chosen = plans[best]
    how = scores.describe(best)
    given = "points and a box" if guide.clicks and guide.box else "points" if guide.clicks else "a box"
    note = f"given by {given}; read as {chosen.concept.name!r} ({how})"
    log.info("%r %s", plan.prompt, note)
    return dataclasses.replace(plan, concept=chosen.concept, texts=chosen.texts, members=chosen.members,
                               matched="guide", note=note)
