"""Zoom-out-zoom-in: a coarse pass over the whole volume, then a finer grid on each structure's region.

SegVol's strategy for small structures: the first pass (the model's own grid, e.g. 3 mm) finds
where each prompted structure is; each region, with a margin and at least one zoom-in window of
context, is cut from the input and segmented again by the model's zoom-in weights (the same
network fine-tuned on a finer grid, e.g. 2 x 2 x 3 mm: ``<model>/zoom``). Regions are merged
while their union is no larger than their sum (e.g. the pancreas and the adrenal glands), and each
merged region is segmented once for all its prompts: the network then runs once per window for
all of them, and sees more context. Inside each prompt's own region the fine mask replaces the
coarse one; a structure the coarse pass did not find is left as it was. Overlaps between prompts
are then resolved in prompt order (the first prompt keeps a voxel).

Example:
    >>> seg = sat.segment("ct.nii.gz", ["pancreas", "gallbladder"], zoom=True)   # doctest: +SKIP
"""

from __future__ import annotations

import logging

import numpy as np

from sat.io import Volume
from sat.postprocess import bounding_box

log = logging.getLogger(__name__)

__all__ = ["MARGIN_MM", "merge_boxes", "zoom_box", "zoom_in"]

MARGIN_MM = 10.0  # added around the coarse mask's bounding box


def zoom_box(box: tuple[slice, ...], volume: Volume, field_mm: float, *, margin_mm: float = MARGIN_MM
             ) -> tuple[slice, ...]:
    """Input-grid box to segment again: ``box`` grown by ``margin_mm`` and to at least ``field_mm``
    along every axis (context for the zoom-in windows), clipped to the volume."""
    out = []
    for s, step, n in zip(box, volume.spacing, volume.shape, strict=True):
        lo, hi = s.start - margin_mm / step, s.stop + margin_mm / step
        short = field_mm / step - (hi - lo)
        if short > 0:
            lo, hi = lo - short / 2, hi + short / 2
        out.append(slice(max(0, int(np.floor(lo))), min(n, int(np.ceil(hi)))))
    return tuple(out)


def _size(box: tuple[slice, ...]) -> int:
    return int(np.prod([s.stop - s.start for s in box]))


def _union(a: tuple[slice, ...], b: tuple[slice, ...]) -> tuple[slice, ...]:
    return tuple(slice(min(x.start, y.start), max(x.stop, y.stop)) for x, y in zip(a, b, strict=True))


def merge_boxes(boxes: dict[str, tuple[slice, ...]]) -> list[tuple[tuple[slice, ...], list[str]]]:
    """Groups ``(box, prompts)`` of prompt boxes: two groups merge while the box around both holds no
    more voxels than the two boxes together, so merging never adds work."""
    groups = [(box, [prompt]) for prompt, box in boxes.items()]
    while True:
        pair = next(((i, j) for i in range(len(groups)) for j in range(i + 1, len(groups))
                     if _size(_union(groups[i][0], groups[j][0])) <= _size(groups[i][0]) + _size(groups[j][0])), None)
        if pair is None:
            return groups
        i, j = pair
        groups[i] = (_union(groups[i][0], groups[j][0]), groups[i][1] + groups[j][1])
        del groups[j]


def _crop(volume: Volume, box: tuple[slice, ...]) -> Volume:
    affine = volume.affine.copy()
    affine[:3, 3] = volume.affine[:3, :3] @ np.array([s.start for s in box], np.float64) + volume.affine[:3, 3]
    meta = {k: v for k, v in volume.meta.items() if k != "geometry"}
    return Volume(np.ascontiguousarray(volume.array[box]), affine, volume.modality, meta)


def zoom_in(segmenter, volume: Volume, coarse, session, *, largest_component: bool = True):
    """The coarse result ``coarse`` with each text prompt's region segmented again on the zoom-in grid.

    Args:
        segmenter: the :class:`sat.api.Segmenter` of the coarse pass (its ``zoom_model`` is used).
        volume: the input volume.
        coarse: the coarse :class:`~sat.segmentation.Segmentation`.
        session: the coarse pass's :class:`~sat.interactive.Session` (plans and options).
        largest_component: apply the zoom-in model's connected-component rule.

    Returns:
        A new Segmentation (not refinable); ``meta["zoom"]`` lists the region of every prompt.
    """
    from sat.segmentation import Segmentation

    fine = segmenter.zoom_model
    field = float(max(np.asarray(fine.model.config.patch_size) * np.asarray(fine.spacing)))
    meta = dict(coarse.meta)
    masks = {plan.prompt: coarse[plan.prompt] for plan in session.plans}
    boxes = {plan.prompt: zoom_box(bounding_box(masks[plan.prompt]), volume, field) for plan in session.plans
             if plan.kind != "empty" and masks[plan.prompt].any()}  # nothing found: nothing to zoom into
    groups = merge_boxes(boxes)
    for group, prompts in groups:
        part = fine.segment(_crop(volume, group), prompts, modality=volume.modality, on_untrained="text",
                            overlap=meta["overlap"], threshold=meta["threshold"],
                            presence_gating=meta["presence_gating"], presence_veto=meta["presence_veto"],
                            largest_component=largest_component)
        for prompt in prompts:
            box = boxes[prompt]
            inner = tuple(slice(b.start - g.start, b.stop - g.start) for b, g in zip(box, group, strict=True))
            masks[prompt][box] = part[prompt][inner]
    regions = {p: [[s.start, s.stop] for s in box] for p, box in boxes.items()}
    meta["zoom"] = {"model": fine.name, "spacing": list(fine.spacing), "regions": regions,
                    "passes": [sorted(prompts) for _, prompts in groups]}
    labels = [coarse.labels[v] for v in sorted(coarse.labels)]
    return Segmentation(masks, coarse.affine, labels=labels, modality=coarse.modality, meta=meta)
