"""Which trained structure do points or a box alone point at?

Before the prompt head runs on a structure given without text, the network segments every
concept it was trained on inside the guide's region, and each concept is scored against the
guide: the mean probability at the positive clicks minus the mean at the negative ones, and the
Dice of its mask with the box. The best concept is taken when it agrees well enough
(:data:`MIN_CLICK_SCORE`, :data:`MIN_BOX_DICE`); the structure is then segmented like that
concept's text prompt steered by the same points and box (the label records the concept read).
Otherwise the head works from the guide alone: an unknown structure (a tumour the model never
learnt) is outlined from the clicks and box only.

Example:
    >>> seg = model.segment("ct.nii.gz", box=(40, -80, 60, 120, 10, 140))   # doctest: +SKIP
    >>> seg.labels[1].concept, seg.labels[1].note                          # doctest: +SKIP
    ('liver', "given by a box; read as 'liver' (box Dice 0.62)")
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import torch

from sat.interactive.guides import Guide

log = logging.getLogger(__name__)

__all__ = ["MIN_BOX_DICE", "MIN_CLICK_SCORE", "read_concept", "score_concepts"]

MIN_CLICK_SCORE = 0.5  # mean probability at positive clicks minus at negative clicks
MIN_BOX_DICE = 0.3  # Dice of a concept's mask with the box (an organ fills 30-70 % of its box)


def score_concepts(probs: np.ndarray, guide: Guide, offset) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(click scores [N] or None, box Dice [N] or None) of concept probabilities ``probs [N, *region]``."""
    click, box = None, None
    local = [tuple(int(np.clip(np.floor(v - o + 0.5), 0, n - 1)) for v, o, n in zip(c[:3], offset, probs.shape[1:],
                                                                                      strict=True)) + (c[3],)
             for c in guide.clicks]
    if local:
        pos = [probs[(slice(None), *c[:3])] for c in local if c[3]]
        neg = [probs[(slice(None), *c[:3])] for c in local if not c[3]]
        click = (np.mean(pos, axis=0) if pos else 0.0) - (np.mean(neg, axis=0) if neg else 0.0)
        click = np.broadcast_to(np.asarray(click, np.float64), (probs.shape[0],))
    if guide.box is not None:
        inside = np.zeros(probs.shape[1:], bool)
        lo = [max(0, b - o) for b, o in zip(guide.box[:3], offset, strict=True)]
        hi = [max(0, b + 1 - o) for b, o in zip(guide.box[3:], offset, strict=True)]
        inside[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = True
        masks = probs > 0.5
        overlap = (masks & inside).reshape(len(probs), -1).sum(1)
        box = 2.0 * overlap / np.maximum(masks.reshape(len(probs), -1).sum(1) + inside.sum(), 1)
    return click, box


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
    click, box = score_concepts(probs, guide, [s.start for s in region])
    parts = [(click, MIN_CLICK_SCORE, "click score"), (box, MIN_BOX_DICE, "box Dice")]
    parts = [(s, floor, name) for s, floor, name in parts if s is not None]
    total = sum(s / floor for s, floor, _ in parts)  # each part in units of its floor
    best = int(np.argmax(total))
    if not all(s[best] >= floor for s, floor, _ in parts):
        log.info("%r: no trained structure agrees with its points/box; outlined from them alone", plan.prompt)
        return plan
    chosen = plans[best]
    how = ", ".join(f"{name} {s[best]:.2f}" for s, _, name in parts)
    given = "points and a box" if guide.clicks and guide.box else "points" if guide.clicks else "a box"
    note = f"given by {given}; read as {chosen.concept.name!r} ({how})"
    log.info("%r %s", plan.prompt, note)
    return dataclasses.replace(plan, concept=chosen.concept, texts=chosen.texts, members=chosen.members,
                               matched="guide", note=note)
