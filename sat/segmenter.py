"""A loaded model: :class:`Segmenter` segments volumes from text prompts, points and boxes.

Data flow: ``sat.io.load`` -> ``sat.preprocess.standardize`` (model spacing) -> prompts
resolved on the knowledge tree and embedded once (cached per model, per prompt and
modality) -> ``sat.model.predict`` (sliding window, all prompts at once) -> points and boxes
(:mod:`sat.interactive`) -> threshold -> nearest inversion onto the input grid ->
:class:`~sat.segmentation.Segmentation`. :func:`sat.load_model` builds one.

Example:
    >>> model = sat.load_model("sat-tiny")                              # doctest: +SKIP
    >>> seg = model.segment("ct.nii.gz", "kidneys", modality="ct")      # doctest: +SKIP
    >>> seg.labels[1].members                                           # doctest: +SKIP
    ('kidney_left', 'kidney_right')
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from sat._defaults import PRESENCE_VETO
from sat.errors import InputError
from sat.interactive import Session, guides_for
from sat.knowledge.prompts import PromptPlan as _Plan
from sat.knowledge.prompts import check_prompts, log_plans
from sat.postprocess import applies
from sat.segmentation import Label, Segmentation

log = logging.getLogger(__name__)

__all__ = ["Segmenter", "resolve_device"]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> cuda if available else cpu; ``"cpu"``, ``"cuda"``, ``"cuda:N"`` checked."""
    name = str(device).lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InputError(f"device {device!r} asked but CUDA is not available; use device='cpu' or 'auto'")
        return torch.device(name)
    raise InputError(f"unknown device {device!r}; use 'auto', 'cpu' or 'cuda'")


def _one_piece(plan: _Plan, rule: dict | None, slices: int) -> tuple[bool, ...]:
    """Per query text of ``plan``: whether the model's component rule keeps one piece of it."""
    if plan.kind == "text":
        return (False,) * len(plan.texts)
    return tuple(applies(rule, member, slices) for member in plan.members)  # texts are the members' names


class Segmenter:
    """A loaded model: load once, segment many volumes (caches model, text encoder, queries).

    Args:
        model: a :class:`sat.model.SATNet`.
        config: its config.json dict (``model``, ``concepts``, ``text_encoder``, ...).
        text_encoder: a :class:`sat.text.TextEncoder` (its ``dim`` must match the model's text_dim).
        device: torch device for the network.
        name: display name (shipped model name or folder name).

    Example:
        >>> seg = load_model("sat-tiny").segment("ct.nii.gz", ["liver", "kidneys"])   # doctest: +SKIP
    """

    def __init__(self, model, config: dict[str, Any], *, text_encoder, device: str | torch.device = "cpu",
                 name: str = "custom", folder: str | os.PathLike | None = None) -> None:
        self.device = resolve_device(device) if isinstance(device, str) else device
        self.model = model.to(self.device).eval()
        self.config = config
        self.text_encoder = text_encoder
        self.name = name
        self.folder = Path(folder) if folder is not None else None
        self._queries: dict[tuple[str, str | None], torch.Tensor] = {}
        self._parts: dict[str, Any] = {}  # prompt head, zoom-in model, trained plans: made on first use

    @property
    def prompt_head(self):
        """The :class:`~sat.model.prompt_head.PromptHead` for points and boxes (``<model>/prompts``).

        Raises:
            InputError: the model ships no prompt head.
        """
        if "head" not in self._parts:
            from sat.model.prompt_head import HEAD_FOLDER, load_head

            folder = self.folder / HEAD_FOLDER if self.folder is not None else None
            if folder is None or not (folder / "config.json").is_file():
                raise InputError(f"model {self.name!r} has no prompt head, so it takes no points or boxes; use a model "
                                 "that ships one (sat-tiny) or train one with `sat train prompts`")
            self._parts["head"] = load_head(folder, device=self.device)[0]
        return self._parts["head"]

    @property
    def zoom_model(self) -> Segmenter:
        """The zoom-in model (``<model>/zoom``: the same network fine-tuned on a finer grid), sharing
        this model's text encoder and query cache.

        Raises:
            InputError: the model ships no zoom-in weights.
        """
        if "zoom" not in self._parts:
            from sat.model import load_pretrained

            folder = self.folder / "zoom" if self.folder is not None else None
            if folder is None or not (folder / "config.json").is_file():
                raise InputError(f"model {self.name!r} has no zoom-in weights, so zoom=True is not available; "
                                 "use a model that ships them (sat-tiny)")
            net, config = load_pretrained(folder)
            zoomed = Segmenter(net, config, text_encoder=self.text_encoder, device=self.device,
                               name=f"{self.name}/zoom", folder=folder)
            zoomed._queries = self._queries  # same text encoder: one cache
            self._parts["zoom"] = zoomed
        return self._parts["zoom"]

    @property
    def concepts(self) -> list[str]:
        """Concept ids the model was trained on (config ``concepts``; empty if not declared)."""
        return list(self.config.get("concepts") or [])

    @property
    def inference(self) -> dict[str, Any]:
        """The model's inference defaults (config ``inference``: overlap, preprocess, blend), may be empty."""
        return dict(self.config.get("inference") or {})

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Model-space voxel size in mm."""
        return tuple(float(s) for s in self.model.config.spacing)  # type: ignore[return-value]

    def __repr__(self) -> str:
        return f"Segmenter({self.name!r}, concepts={len(self.concepts)}, spacing={self.spacing}, device={self.device})"

    # -- prompts ---------------------------------------------------------------------------
    def plan(self, prompts: str | Sequence[str], *, on_untrained: str = "error") -> list[_Plan]:
        """Resolve prompts on the knowledge tree and decide how each is answered
        (:func:`sat.knowledge.prompts.plan_prompts`; raises ``UntrainedPromptError`` under ``"error"``)."""
        from sat import knowledge
        from sat.knowledge.prompts import plan_prompts

        plans = plan_prompts(knowledge.load(), check_prompts(prompts), self.concepts, on_untrained=on_untrained,
                             model=f"model {self.name!r}")
        log_plans(plans)
        return plans

    def trained_plans(self) -> list[_Plan]:
        """The plan of every trained concept (resolved once per model)."""
        if "trained_plans" not in self._parts:
            self._parts["trained_plans"] = self.plan(self.concepts)
        return self._parts["trained_plans"]

    def queries(self, texts: Sequence[str], modality: str | None) -> torch.Tensor:
        """Query embeddings ``[N, D]`` float32 for texts (cached per (text, modality))."""
        missing = [t for t in dict.fromkeys(texts) if (t, modality) not in self._queries]
        if missing:
            embedded = self.text_encoder.encode(missing, modality=modality)
            for text, row in zip(missing, embedded, strict=True):
                self._queries[(text, modality)] = row.detach().cpu()
        return torch.stack([self._queries[(t, modality)] for t in texts])

    # -- segmentation ------------------------------------------------------------------------
    def segment(
        self,
        image: Any,
        prompts: str | Sequence[str] | None = None,
        *,
        points: Any = None,
        box: Any = None,
        space: str = "world",
        zoom: bool = False,
        modality: str | None = None,
        on_untrained: str = "error",
        overlap: float | None = None,
        threshold: float = 0.5,
        presence_gating: bool = True,
        presence_veto: float = PRESENCE_VETO,
        largest_component: bool = True,
        progress: bool = False,
        probabilities: bool = False,
    ) -> Segmentation:
        """Segment ``prompts`` in ``image``.

        Args:
            image: path, nibabel image, :class:`sat.io.Volume` or ``(array, affine)``.
            prompts: one prompt or a list; a concept with trained descendants but no label of
                its own ("kidneys") is the union of those, each segmented as it would be alone.
                None with ``points`` or ``box``: a structure given by them alone (named "region",
                or by the keys of a ``points``/``box`` dict).
            points: clicks ``(x, y, z)`` or ``(x, y, z, label)`` (label 1: the structure is here,
                0: it is not) for the only prompt, or a dict prompt -> clicks. Only the windows
                around them are recomputed, by the model's prompt head (:mod:`sat.interactive`).
            box: ``(x0, y0, z0, x1, y1, z1)`` two opposite corners around the structure, for the
                only prompt, or a dict prompt -> box.
            space: ``"world"`` (default: points and boxes in RAS millimetres) or ``"voxel"``
                (indices of the input array).
            zoom: zoom-out-zoom-in: after this pass, segment each structure's region again on the
                model's finer zoom-in grid (:mod:`sat.interactive.zoom`; slower).
            modality: ``"ct" | "mr" | "pet"``; default: the volume's (DICOM tag, NIfTI description or
                intensity guess, logged).
            on_untrained: what a prompt the model was not trained on ("brain" for an abdominal
                model) or that the knowledge tree cannot resolve ("zzqx blorp") gets:
                ``"error"`` (default) raises :class:`~sat.errors.UntrainedPromptError` naming the
                nearest trained concepts; ``"empty"`` gives an empty mask (logged); ``"text"`` embeds
                the prompt as free text (open vocabulary, unvalidated). Why the default refuses: the
                model outputs a mask for any query, even one it never learnt, and a silent empty
                mask would read as "structure absent", which is a clinical claim.
            overlap: sliding-window overlap in [0, 1); default: the model's (config ``inference``), else 0.25.
            threshold: probability above which a voxel is in a mask, in (0, 1).
            presence_gating: let a window veto a prompt its presence head calls very unlikely
                there (the rule of :mod:`sat.model.inference`); False keeps the mask logits alone.
            presence_veto: presence probability below which a window vetoes, in (0, 1).
            largest_component: keep only the largest connected component of the concepts the
                model lists as one piece for inputs of this depth (:mod:`sat.postprocess`; a union
                applies it to each member); False keeps every component.
            progress: show a progress bar over the sliding windows.
            probabilities: also keep ``seg.probabilities[prompt]``, float32 probabilities on the
                input grid (nearest, like the masks: above ``threshold`` where the mask is, before
                the connected-component rule).

        Returns:
            :class:`Segmentation` on the input grid (bool masks, labelmap 1..N in prompt order,
            overlaps given to the most probable prompt); ``seg.labels[i]`` says how each prompt was
            answered (``kind``, ``members``, ``matched``, ``missing``, ``note``); ``meta["warnings"]``
            lists what limits the result (an input thinner than the model's window, a resampled
            DICOM series).

        Raises:
            InputError: bad arguments or image, an image the model would see as a single plane
                (fewer than 2 model voxels along an axis: give more slices), a point outside the
                image, a box with no extent, points or a box on a union prompt.
        """
        from sat import io
        from sat.model.network import veto_logit
        from sat.overlay import backdrop

        overlap = float(self.inference.get("overlap", 0.25)) if overlap is None else overlap
        if not 0.0 < float(threshold) < 1.0:
            raise InputError(f"threshold must be between 0 and 1 (exclusive), got {threshold}")
        if not 0.0 <= float(overlap) < 1.0:
            raise InputError(f"overlap must be in [0, 1), got {overlap}")
        veto_logit(presence_veto)  # a bad threshold fails before any work
        if zoom and (probabilities or points is not None or box is not None):
            raise InputError("zoom=True takes text prompts only, without probabilities; segment with points, a box "
                             "or probabilities=True without zoom")
        plans = self._plans(prompts, points=points, box=box, on_untrained=on_untrained)
        volume = io.load(image, modality=modality, keep_dtype=True)  # an int16 CT stays int16: no float32 copy
        warnings = self._input_warnings(volume)
        logits, record, model_image = self._predict(volume, plans, overlap=overlap, presence_gating=presence_gating,
                                                    presence_veto=float(presence_veto), progress=progress)
        rule = self.config.get("postprocess") if largest_component else None
        slices = int(record.model_shape[2])  # axial slices in model space (RAS: axis 2)
        largest = [_one_piece(p, rule, slices) for p in plans]
        session = Session(self, model_image, record, plans, logits, largest, {},
                          {"overlap": float(overlap), "modality": volume.modality})
        for prompt, guide in guides_for([p.prompt for p in plans], record, points=points, box=box, space=space).items():
            session.run(session._index(prompt), guide)
        labels = [
            Label(value=i, prompt=p.prompt, concept=p.concept.id if p.concept else None,
                  name=p.concept.name if p.concept else None, kind=p.kind, members=p.members,
                  matched=p.matched, missing=p.missing, note=p.note)
            for i, p in enumerate(session.plans, start=1)  # points/box alone may read a concept
        ]
        meta = {"model": self.name, "threshold": float(threshold), "overlap": float(overlap),
                "on_untrained": on_untrained, "presence_gating": bool(presence_gating),
                "presence_veto": float(presence_veto),
                "largest_component": [p.prompt for p, keep in zip(plans, largest, strict=True) if any(keep)],
                "model_spacing": list(self.spacing), "warnings": warnings}
        session.context = {"threshold": float(threshold), "probabilities": probabilities, "shape": volume.shape,
                           "affine": volume.affine, "labels": labels, "modality": volume.modality, "meta": meta,
                           "backdrop": None}
        seg = session.result()
        if zoom:
            from sat.interactive.zoom import zoom_in

            seg = zoom_in(self, volume, seg, session, largest_component=largest_component)
        # the overlay's planes, kept instead of the image (which is released with the call)
        seg._backdrop = session.context["backdrop"] = backdrop(volume.array, seg.labelmap, volume.affine,
                                                               volume.modality)
        return seg

    def _plans(self, prompts, *, points: Any, box: Any, on_untrained: str) -> list[_Plan]:
        """The text prompts' plans, or with ``prompts=None`` one ``"region"`` plan per structure given
        by points or a box alone."""
        if prompts is not None or (points is None and box is None):
            return self.plan(prompts, on_untrained=on_untrained)
        names = [n for value in (points, box) if isinstance(value, dict) for n in value]
        names = check_prompts(list(dict.fromkeys(names)) if names else ["region"])
        return [_Plan(prompt=n, concept=None, kind="region", texts=(), note="given by points or a box alone")
                for n in names]

    def _input_warnings(self, volume) -> list[str]:
        """What the result's reader should know about the input: the reader's geometry corrections
        (e.g. a resampled tilted DICOM series) and thin axes (:func:`sat.model.inference.check_coverage`,
        which raises for an input the model would see as a plane). Thin axes are logged here."""
        from sat.model.inference import check_coverage
        from sat.preprocess import plan as plan_grid

        name = str(volume.meta.get("source", "image"))
        thin = check_coverage(plan_grid(volume, spacing=self.spacing), self.model.config.patch_size, name=name)
        for note in thin:
            log.warning("%s: %s", name, note)
        return [*(volume.meta.get("geometry") or {}).get("notes", []), *thin]

    def _predict(self, volume, plans: list[_Plan], *, overlap: float, presence_gating: bool, presence_veto: float,
                 progress: bool = False):
        """Model-space logits ``[X', Y', Z']`` of each plan's members (a tuple per plan; empty for ``"empty"``
        and ``"region"``), the preprocessing record and the standardized image ``[X', Y', Z']``."""
        from sat.model import predict
        from sat.preprocess import ct_scale_of, ct_window_of, standardize

        texts = list(dict.fromkeys(t for p in plans for t in p.texts))
        intensity = self.config.get("intensity")
        official = self.inference.get("preprocess") == "official"
        image, record = standardize(volume, spacing=self.spacing, ct_scale=ct_scale_of(intensity),
                                    ct_window=ct_window_of(intensity), crop_foreground="positive" if official else False,
                                    normalize="official" if official else True)
        if not texts:  # every prompt is answered by an empty mask or by points: nothing to predict
            return [() for _ in plans], record, image[0]
        queries = self.queries(texts, volume.modality).to(self.device)
        with torch.inference_mode():
            raw = predict(self.model, image[None].to(self.device), queries, overlap=overlap,
                          presence_gating=presence_gating, presence_veto=presence_veto, progress=progress,
                          official_blend=self.inference.get("blend") == "official")
        index = {t: i for i, t in enumerate(texts)}
        return [tuple(raw[index[t]] for t in plan.texts) for plan in plans], record, image[0]
