"""The state behind a segmentation that can still be corrected (:meth:`Segmentation.refine`).

A :class:`Session` keeps what a correction needs and nothing on the input grid: the model-space
image (the network's own grid, e.g. 3 mm), the preprocessing record, every prompt's model-space
logits and its guide. A correction runs only the windows around its new clicks
(:func:`sat.interactive.guides.region_of`) and re-assembles the result on the input grid.

Example:
    >>> seg = model.segment("ct.nii.gz", "liver")                        # doctest: +SKIP
    >>> seg2 = seg.refine("liver", add=[(12.5, -40.0, 88.0)])            # doctest: +SKIP
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from sat.errors import InputError
from sat.interactive.concepts import read_concept
from sat.interactive.guides import Guide, prompted_logits, region_of
from sat.interactive.merge import OUTSIDE, apply_guide, confident_misses

log = logging.getLogger(__name__)

__all__ = ["Session"]


class Session:
    """Model-space state of one segmentation call.

    Args:
        segmenter: the :class:`sat.api.Segmenter` that made it.
        image: [X', Y', Z'] standardized model-space image.
        record: its :class:`sat.preprocess.Record`.
        plans: one :class:`sat.knowledge.prompts.PromptPlan` per prompt (``kind="region"``: no text).
        logits: per plan, a tuple of model-space logits (its members).
        largest: per plan, the one-piece flag of each member.
        guides: prompt -> :class:`Guide` of the prompts with points or a box.
        options: threshold, overlap, probabilities, modality (keyword options of the call).
    """

    def __init__(self, segmenter, image: torch.Tensor, record, plans: Sequence[Any], logits: list[tuple],
                 largest: list[tuple[bool, ...]], guides: dict[str, Guide], options: dict[str, Any]) -> None:
        self.segmenter, self.image, self.record = segmenter, image, record
        self.plans, self.logits, self.largest = list(plans), list(logits), list(largest)
        self.guides, self.options = dict(guides), dict(options)
        self.context: dict[str, Any] = {}  # what the result carries besides masks (shape, affine, labels, meta, ...)

    def _index(self, prompt: str) -> int:
        folded = str(prompt).strip().casefold()
        for i, p in enumerate(self.plans):
            if p.prompt.casefold() == folded or (p.concept is not None and p.concept.id.casefold() == folded):
                return i
        raise InputError(f"no prompt {prompt!r} in this segmentation; its prompts are {[p.prompt for p in self.plans]}")

    def _query(self, plan) -> torch.Tensor | None:
        if plan.kind == "region":
            if not plan.texts:
                return None
            return self.segmenter.queries(list(plan.texts), self.options.get("modality"))[0]
        if plan.kind != "concept" or len(plan.texts) != 1:
            raise InputError(f"prompt {plan.prompt!r} is answered as a {plan.kind} of {len(plan.texts)} structure(s); "
                             "points and boxes steer one structure: give each one its own prompt "
                             "(e.g. 'left kidney' and 'right kidney')")
        return self.segmenter.queries(list(plan.texts), self.options.get("modality"))[0]

    def run(self, i: int, guide: Guide, *, new_clicks: Sequence | None = None) -> None:
        """Apply ``guide`` to plan ``i``: run the head over its region (around ``new_clicks`` only when
        given) and merge its logits into that plan's (:func:`sat.interactive.merge.apply_guide`).

        A structure given by points or a box alone is first read as the trained concept whose
        automatic mask agrees best with them (:func:`sat.interactive.concepts.read_concept`), when
        one does; it is then steered like a text prompt (the label records the concept).
        """
        plan = self.plans[i]
        net = self.segmenter.model
        region = region_of(guide, self.image.shape, net.config.patch_size, clicks=new_clicks)
        if region is None:
            return
        if plan.kind == "region" and new_clicks is None:
            if guide.box is None and not guide.positives:
                raise InputError(f"{plan.prompt!r} has no text, no box and no positive point: nothing says where the "
                                 "structure is; add a point with label 1 (CLI: X,Y,Z,+) or a box")
            self.plans[i] = plan = read_concept(self.segmenter, self.image, guide, region, plan,
                                                modality=self.options.get("modality"))
        query = self._query(plan)
        has_text = query is not None
        base = self.logits[i][0] if self.logits[i] else torch.full(tuple(self.image.shape), OUTSIDE)
        if has_text and plan.kind == "region" and new_clicks is None:  # read as a concept: its automatic mask
            base = self.auto_logits(query, region, base)
        # clicks in a confident miss also need the head's answer without the text (same network pass)
        also_alone = has_text and bool(confident_misses(base, guide.clicks if new_clicks is None else new_clicks))
        device = next(net.parameters()).device
        new = prompted_logits(net, self.segmenter.prompt_head, self.image.to(device),
                              None if query is None else query.to(device), guide, region,
                              overlap=float(self.options.get("overlap", 0.25)), also_alone=also_alone).cpu()
        new, alone = (new[0], new[1]) if also_alone else (new, None)
        # a structure read from points or a box is one piece (plus the pieces clicked)
        one_piece = bool(self.largest[i] and self.largest[i][0]) or plan.kind == "region"
        self.logits[i] = (apply_guide(base, new, region, guide, has_text=has_text, one_piece=one_piece,
                                      clicks=new_clicks, replace=guide.box is not None and new_clicks is None,
                                      alone=alone),)
        self.largest[i] = (False,)  # the guide applied the component rule
        self.guides[plan.prompt] = guide

    def auto_logits(self, query: torch.Tensor, region: tuple[slice, ...], base: torch.Tensor) -> torch.Tensor:
        """``base`` with the network's own logits of ``query`` over ``region``."""
        from sat.model import predict

        net = self.segmenter.model
        device = next(net.parameters()).device
        out = base.clone()
        out[region] = predict(net, self.image[region].float()[None, None].to(device), query[None].to(device),
                              overlap=float(self.options.get("overlap", 0.25)))[0].cpu()
        return out

    def result(self):
        """The :class:`~sat.segmentation.Segmentation` of the current state (input grid)."""
        from sat.preprocess.ongrid import probabilities_on_input_grid, to_input_grid
        from sat.segmentation import Segmentation

        c = self.context
        crops, labelmap = to_input_grid(self.logits, self.plans, self.record, c["threshold"], self.largest)
        probs = probabilities_on_input_grid(self.logits, self.plans, self.record) if c["probabilities"] else None
        meta = dict(c["meta"], guided={p: {"clicks": len(g.clicks), "box": g.box is not None}
                                       for p, g in self.guides.items()})
        seg = Segmentation._from_crops(crops, c["shape"], c["affine"], labelmap, labels=c["labels"],
                                       backdrop=c["backdrop"], modality=c["modality"], meta=meta,
                                       probabilities=probs)
        seg._session = self
        return seg

    def refine(self, prompt: str, *, add: Sequence = (), remove: Sequence = (), space: str = "world"):
        """A new result with corrective clicks on one prompt (``add``: the structure is here,
        ``remove``: it is not), recomputing only the windows around these clicks.

        Raises:
            InputError: no click given, unknown prompt, a click outside the image, or a prompt that
                is a union of several structures.
        """
        add, remove = list(add or []), list(remove or [])
        if not add and not remove:
            raise InputError("refine needs at least one click: add=[(x, y, z)] or remove=[(x, y, z)]")
        i = self._index(prompt)
        clicks = [(*_xyz(p, "add"), 1) for p in add] + [(*_xyz(p, "remove"), 0) for p in remove]
        new = Guide.parse(self.record, points=clicks, space=space).clicks
        guide = self.guides.get(self.plans[i].prompt, Guide()).merged(new)
        out = copy.copy(self)
        out.plans, out.logits, out.largest = list(self.plans), list(self.logits), list(self.largest)
        out.guides = dict(self.guides)
        out.run(i, guide, new_clicks=new)
        return out.result()


def _xyz(point: Any, what: str) -> tuple[float, float, float]:
    values = list(point) if isinstance(point, (list, tuple, np.ndarray)) else []
    if len(values) != 3:
        raise InputError(f"{what}: a click is (x, y, z), got {point!r}")
    return tuple(values)  # type: ignore[return-value]
