"""Segment a 3D volume from text prompts: :func:`segment`, :func:`load_model`, :class:`Segmenter`.

Data flow: ``sat.io.load`` -> ``sat.preprocess.standardize`` (model spacing) -> prompts
resolved on the knowledge tree and embedded once (cached per model, per prompt and
modality) -> ``sat.model.predict`` (sliding window, all prompts at once) -> threshold ->
``sat.preprocess.invert`` (nearest, onto the input grid) -> :class:`~sat.segmentation.Segmentation`.

Example:
    >>> import sat
    >>> seg = sat.segment("ct.nii.gz", ["liver", "left kidney"])        # doctest: +SKIP
    >>> model = sat.load_model("sat-tiny")                              # doctest: +SKIP
    >>> seg = model.segment("ct.nii.gz", "kidneys", modality="ct")      # doctest: +SKIP
    >>> seg.labels[1].members                                           # doctest: +SKIP
    ('kidney_left', 'kidney_right')
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sat.errors import InputError, UnknownTermError, WeightsError
from sat.segmentation import Label, Segmentation

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_MODEL", "Segmenter", "load_model", "segment", "shipped_models"]

DEFAULT_MODEL = "sat-tiny"
MODELS_DIR = Path(__file__).resolve().parent / "resources" / "models"
_CACHE: dict[tuple[str, str], Segmenter] = {}


def shipped_models() -> dict[str, Path]:
    """Name -> folder of every model shipped in ``sat/resources/models`` (sorted by name)."""
    if not MODELS_DIR.is_dir():
        return {}
    return {p.name: p for p in sorted(MODELS_DIR.iterdir()) if (p / "config.json").is_file()}


def model_dir(name_or_dir: str | os.PathLike) -> Path:
    """Folder of a shipped model name, or the given folder (must hold config.json + weights).

    Raises:
        InputError: not a shipped name and not an existing folder (lists the shipped names).
    """
    shipped = shipped_models()
    if str(name_or_dir) in shipped:
        return shipped[str(name_or_dir)]
    path = Path(name_or_dir).expanduser()
    if path.is_dir():
        return path.resolve()
    names = ", ".join(shipped) or "none installed"
    raise InputError(
        f"unknown model {str(name_or_dir)!r}; shipped models: {names}; "
        "or give a folder with model.safetensors and config.json"
    )


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


def load_model(name_or_dir: str | os.PathLike = DEFAULT_MODEL, *, device: str = "auto") -> Segmenter:
    """Load a model for segmentation: a shipped model name (see ``sat models``) or a folder.

    The folder holds ``model.safetensors`` + ``config.json``; the config's ``text_encoder``
    names the text encoder (default ``"default"``) and ``concepts`` the concept ids the model
    was trained on.

    Raises:
        InputError: unknown name / device; WeightsError: missing or corrupt weights or config.

    Example:
        >>> model = load_model("sat-tiny", device="cpu")      # doctest: +SKIP
        >>> seg = model.segment("ct.nii.gz", ["liver"])       # doctest: +SKIP
    """
    from sat.model import load_pretrained
    from sat.text import load_encoder

    folder = model_dir(name_or_dir)
    dev = resolve_device(device)
    try:
        model, config = load_pretrained(folder, device="cpu")
    except WeightsError:
        raise
    except Exception as exc:  # anything else a broken folder can raise
        raise WeightsError(f"cannot load the model in {folder} ({type(exc).__name__}: {exc}); re-save it") from exc
    encoder = load_encoder(config.get("text_encoder", "default"))
    name = str(name_or_dir) if str(name_or_dir) in shipped_models() else folder.name
    return Segmenter(model, config, text_encoder=encoder, device=dev, name=name)


@dataclass(frozen=True)
class _Plan:
    """How one prompt is segmented: which query texts, combined by union (max logit)."""

    prompt: str
    concept: Any  # sat.knowledge.Concept | None
    kind: str  # "concept" | "union" | "text"
    texts: tuple[str, ...]
    members: tuple[str, ...]


def _trained_parts(tree, concept, trained: set[str]) -> list:
    """Topmost trained concepts below ``concept`` (their union is its mask); lesions only for a lesion."""
    below = [c for c in tree.descendants(concept) if c.id in trained and (concept.is_lesion or not c.is_lesion)]
    ids = {c.id for c in below}
    return [c for c in below if not ({a.id for a in tree.ancestors(c)} & ids)]


def _check_prompts(prompts: str | Sequence[str]) -> list[str]:
    items = [prompts] if isinstance(prompts, str) else list(prompts) if prompts is not None else []
    if not items:
        raise InputError("no prompt given; pass a prompt such as 'liver' or a list of prompts")
    out: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise InputError(f"prompts must be strings, got {type(item).__name__} {item!r}")
        text = " ".join(item.split())
        if not text:
            raise InputError("empty prompt; give the name of a structure, e.g. 'left kidney'")
        if text in out:
            raise InputError(f"prompt {text!r} is given twice; give each prompt once")
        out.append(text)
    return out


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
                 name: str = "custom") -> None:
        self.device = resolve_device(device) if isinstance(device, str) else device
        self.model = model.to(self.device).eval()
        self.config = config
        self.text_encoder = text_encoder
        self.name = name
        self._queries: dict[tuple[str, str | None], torch.Tensor] = {}

    @property
    def concepts(self) -> list[str]:
        """Concept ids the model was trained on (config ``concepts``; empty if not declared)."""
        return list(self.config.get("concepts") or [])

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Model-space voxel size in mm."""
        return tuple(float(s) for s in self.model.config.spacing)  # type: ignore[return-value]

    def __repr__(self) -> str:
        return f"Segmenter({self.name!r}, concepts={len(self.concepts)}, spacing={self.spacing}, device={self.device})"

    # -- prompts ---------------------------------------------------------------------------
    def plan(self, prompts: str | Sequence[str]) -> list[_Plan]:
        """Resolve prompts on the knowledge tree and decide the query texts of each."""
        from sat import knowledge

        tree = knowledge.load()
        trained = set(self.concepts)
        return [self._plan_one(tree, text, trained) for text in _check_prompts(prompts)]

    @staticmethod
    def _plan_one(tree, text: str, trained: set[str]) -> _Plan:
        try:
            concept = tree[text] if text in tree else tree.resolve(text)
        except UnknownTermError:
            log.warning("prompt %r is not in the knowledge tree: embedded as free text (open vocabulary)", text)
            return _Plan(text, None, "text", (text,), ())
        if not trained or concept.id in trained:
            return _Plan(text, concept, "concept", (concept.name,), (concept.id,))
        parts = _trained_parts(tree, concept, trained)
        if parts:
            log.info("prompt %r -> union of %s", text, ", ".join(c.id for c in parts))
            return _Plan(text, concept, "union", tuple(c.name for c in parts), tuple(c.id for c in parts))
        log.warning("prompt %r -> %s, which the model was not trained on: embedded as free text", text, concept.id)
        return _Plan(text, concept, "text", (concept.name,), ())

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
        prompts: str | Sequence[str],
        *,
        modality: str | None = None,
        overlap: float = 0.25,
        threshold: float = 0.5,
        progress: bool = False,
    ) -> Segmentation:
        """Segment ``prompts`` in ``image``.

        Args:
            image: path, nibabel image, :class:`sat.io.Volume` or ``(array, affine)``.
            prompts: one prompt or a list; a concept with trained descendants but no label of
                its own ("kidneys") is the union of those; unknown text is embedded as is.
            modality: ``"ct" | "mr" | "pet"``; default: the volume's (DICOM tag or intensity guess).
            overlap: sliding-window overlap in [0, 1).
            threshold: probability above which a voxel is in a mask, in (0, 1).
            progress: show a progress bar over the sliding windows.

        Returns:
            :class:`Segmentation` on the input grid (bool masks, labelmap 1..N in prompt order,
            overlaps given to the most probable prompt).
        """
        from sat import io

        if not 0.0 < float(threshold) < 1.0:
            raise InputError(f"threshold must be between 0 and 1 (exclusive), got {threshold}")
        if not 0.0 <= float(overlap) < 1.0:
            raise InputError(f"overlap must be in [0, 1), got {overlap}")
        plans = self.plan(prompts)
        volume = io.load(image, modality=modality)
        logits, record = self._predict(volume, plans, overlap=overlap, progress=progress)
        crops, labelmap = _to_input_grid(logits, plans, record, threshold)
        labels = [
            Label(value=i, prompt=p.prompt, concept=p.concept.id if p.concept else None,
                  name=p.concept.name if p.concept else None, kind=p.kind, members=p.members)
            for i, p in enumerate(plans, start=1)
        ]
        meta = {"model": self.name, "threshold": float(threshold), "overlap": float(overlap),
                "model_spacing": list(self.spacing)}
        return Segmentation._from_crops(crops, volume.shape, volume.affine, labelmap, labels=labels,
                                        image=volume.array, modality=volume.modality, meta=meta)

    def _predict(self, volume, plans: list[_Plan], *, overlap: float, progress: bool):
        """Model-space per-prompt logits ``[N, X', Y', Z']`` (union = max) and the preprocessing record."""
        from sat.model import predict
        from sat.preprocess import standardize

        texts = list(dict.fromkeys(t for p in plans for t in p.texts))
        queries = self.queries(texts, volume.modality).to(self.device)
        image, record = standardize(volume, spacing=self.spacing)
        with torch.inference_mode():
            raw = predict(self.model, image[None].to(self.device), queries, overlap=overlap, progress=progress)
        index = {t: i for i, t in enumerate(texts)}
        logits = []
        for plan in plans:
            rows = [index[t] for t in plan.texts]
            logits.append(raw[rows[0]] if len(rows) == 1 else raw[rows].amax(dim=0))
        return logits, record


def _to_input_grid(logits: list[torch.Tensor], plans: list[_Plan], record, threshold: float):
    """Threshold in model space, resolve overlaps by highest probability, invert (nearest) to the input grid.

    Nearest inversion is exact (each input voxel takes the decision of the model voxel that
    contains its centre, so masks and labelmap agree voxel for voxel) and cheap: one
    inversion of the labelmap; masks stay in model space (voxel counts computed there) and
    are gathered onto the input grid, inside their bounding box, only when accessed.
    """
    from sat.preprocess import invert

    masks, model_labels = _threshold_and_label(logits, threshold)
    labelmap = invert(model_labels, record, mode="nearest")
    lookup = _NearestLookup.build(record, labelmap, model_labels)
    crops = {}
    for plan, mask in zip(plans, masks, strict=True):
        crops[plan.prompt] = _LazyMask(mask, lookup) if lookup else _crop_full(invert(mask, record, mode="nearest"))
    return crops, labelmap


def _threshold_and_label(logits: list[torch.Tensor], threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Model-space masks ``[N, X', Y', Z']`` bool and labelmap (1..N, most probable prompt; ties: first).

    Plain numpy, one prompt at a time (single-threaded: no thread hand-offs on a busy CPU).
    """
    cut = np.float32(math.log(threshold / (1.0 - threshold)))  # sigmoid(x) > t  <=>  x > logit(t)
    shape = tuple(logits[0].shape)
    masks = np.zeros((len(logits), *shape), dtype=bool)
    labels = np.zeros(shape, dtype=np.uint8 if len(logits) < 256 else np.uint16)
    best = np.full(shape, -np.inf, dtype=np.float32)
    win = np.empty(shape, dtype=bool)
    for value, logit in enumerate(logits, start=1):
        x = logit.detach().cpu().numpy()
        np.greater(x, cut, out=masks[value - 1])
        np.greater(x, best, out=win)
        win &= masks[value - 1]
        np.copyto(best, x, where=win, casting="unsafe")
        labels[win] = value
    return masks, labels


def _crop_full(mask: np.ndarray):
    from sat.segmentation import _Crop

    return _Crop(mask)


class _NearestLookup:
    """For each input axis: the model axis it comes from and the model index of every input voxel.

    Built by inverting a probe (the linear index of every model voxel) with
    ``preprocess.invert(mode="nearest")`` and checked by rebuilding the inverted labelmap,
    so it reproduces ``invert`` exactly; masks are then gathered inside their bounding box.
    """

    def __init__(self, axes: list[int], index: list[np.ndarray]) -> None:
        self.axes, self.index = axes, index  # index: int64 per input axis, -1 outside a crop

    @classmethod
    def build(cls, record, labelmap: np.ndarray, model_labels: np.ndarray) -> _NearestLookup | None:
        from sat.preprocess import invert

        shape = tuple(int(n) for n in record.model_shape)
        if math.prod(shape) >= 2**31 - 1:
            return None
        probe = invert(np.arange(1, math.prod(shape) + 1, dtype=np.int32).reshape(shape), record, mode="nearest")
        first = int(np.argmax(probe.reshape(-1) > 0))
        if probe.reshape(-1)[first] <= 0:
            return None
        point = np.unravel_index(first, probe.shape)
        axes, lines = [], []
        for a in range(3):
            line = probe[tuple(slice(None) if i == a else point[i] for i in range(3))].astype(np.int64)
            coords = np.unravel_index(np.maximum(line - 1, 0), shape)
            varying = [k for k in range(3) if np.unique(coords[k][line > 0]).size > 1]
            axes.append(varying[0] if len(varying) == 1 else -1)
            lines.append((coords, line))
        del probe
        missing = sorted(set(range(3)) - set(axes))
        axes = [k if k >= 0 else missing.pop(0) for k in axes]
        if sorted(axes) != [0, 1, 2]:
            return None
        index = [np.where(line > 0, coords[k], -1) for (coords, line), k in zip(lines, axes, strict=True)]
        lookup = cls(axes, index)
        full = tuple(slice(0, len(i)) for i in index)
        if not np.array_equal(lookup.gather(model_labels, full), labelmap):
            log.debug("nearest lookup does not reproduce preprocess.invert; inverting each mask instead")
            return None
        return lookup

    def gather(self, model_array: np.ndarray, box: tuple[slice, ...]) -> np.ndarray:
        """``model_array`` sampled at the input voxels of ``box`` (0 outside a crop)."""
        ii = [self.index[a][box[a]] for a in range(3)]
        by_model = [None, None, None]
        for a, k in enumerate(self.axes):
            by_model[k] = np.maximum(ii[a], 0)
        data = model_array[np.ix_(*by_model)].transpose(self.axes)
        outside = [i < 0 for i in ii]
        if any(o.any() for o in outside):
            keep = ~outside[0][:, None, None] & ~outside[1][None, :, None] & ~outside[2][None, None, :]
            data = data * keep.astype(data.dtype)
        return data

    def box(self, mask: np.ndarray) -> tuple[slice, ...] | None:
        """Input-grid bounding box of the voxels reading a model-space bool mask (None: empty)."""
        box = []
        for a, k in enumerate(self.axes):
            hits = np.flatnonzero(mask.any(axis=tuple(i for i in range(3) if i != k)))
            if hits.size == 0:
                return None
            sel = np.flatnonzero((self.index[a] >= hits[0]) & (self.index[a] <= hits[-1]))
            if sel.size == 0:
                return None
            box.append(slice(int(sel[0]), int(sel[-1]) + 1))
        return tuple(box)

    def count(self, mask: np.ndarray) -> int:
        """Exact number of input voxels in the inverted mask, computed in model space."""
        counts = [None, None, None]
        for a, k in enumerate(self.axes):
            idx = self.index[a]
            counts[k] = np.bincount(idx[idx >= 0], minlength=mask.shape[k]).astype(np.int64)
        return int(np.einsum("ijk,i,j,k->", mask.astype(np.int64), *counts, optimize=True))

    def paint(self, mask: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        """The full input-grid bool mask (gathered inside its bounding box only)."""
        out = np.zeros(shape, dtype=bool)
        box = self.box(mask)
        if box is not None:
            out[box] = self.gather(mask, box)
        return out


class _LazyMask:
    """A mask kept in model space; the input-grid array is built on access (exact, see _NearestLookup)."""

    __slots__ = ("mask", "lookup", "voxels")

    def __init__(self, mask: np.ndarray, lookup: _NearestLookup) -> None:
        self.mask, self.lookup = mask, lookup
        self.voxels = lookup.count(mask)

    def full(self, shape: tuple[int, ...]) -> np.ndarray:
        return self.lookup.paint(self.mask, shape)


def segment(
    image: Any,
    prompts: str | Sequence[str],
    *,
    model: str | os.PathLike | Segmenter = DEFAULT_MODEL,
    modality: str | None = None,
    device: str = "auto",
    overlap: float = 0.25,
    threshold: float = 0.5,
    progress: bool = False,
) -> Segmentation:
    """Segment a 3D volume from text prompts (loads the model once per process and caches it).

    Args:
        image: path (NIfTI, MGZ, NRRD, DICOM folder), nibabel image, Volume or ``(array, affine)``.
        prompts: one prompt or a list, e.g. ``"liver"`` or ``["liver", "left kidney", "ribs"]``.
        model: shipped model name, model folder, or a loaded :class:`Segmenter`.
        modality: ``"ct" | "mr" | "pet"``; default: taken from the volume.
        device: ``"auto"`` (cuda if available), ``"cpu"`` or ``"cuda"``.
        overlap: sliding-window overlap; threshold: mask probability threshold.
        progress: show a progress bar.

    Returns:
        :class:`~sat.segmentation.Segmentation`: ``seg["liver"]`` is a bool array of the input's shape.

    Example:
        >>> seg = segment("ct.nii.gz", ["liver", "left kidney"])      # doctest: +SKIP
        >>> seg.volumes_ml()                                          # doctest: +SKIP
    """
    if isinstance(model, Segmenter):
        segmenter = model
    else:
        key = (str(model_dir(model)), str(resolve_device(device)))
        if key not in _CACHE:
            _CACHE.clear()  # keep one model in memory
            _CACHE[key] = load_model(model, device=device)
        segmenter = _CACHE[key]
    return segmenter.segment(image, prompts, modality=modality, overlap=overlap, threshold=threshold,
                             progress=progress)
