"""Segment a 3D volume from text prompts: :func:`segment`, :func:`load_model` (shipped models and
model folders, loaded once per process by :func:`segment`), and :class:`~sat.segmenter.Segmenter`.

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
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sat._defaults import PRESENCE_VETO
from sat.errors import InputError, WeightsError
from sat.segmentation import Segmentation
from sat.segmenter import Segmenter, resolve_device

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_MODEL", "Segmenter", "clear_cache", "load_model", "segment", "shipped_models"]

DEFAULT_MODEL = "sat-tiny"
MODELS_DIR = Path(__file__).resolve().parent / "resources" / "models"
_CACHE: dict[tuple[str, str], Segmenter] = {}  # the model segment() loaded last: (folder, device) -> Segmenter
_CACHE_LOCK = threading.Lock()  # held while loading: concurrent calls for one model load it once


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
    encoder = load_encoder(config.get("text_encoder", "default"), model_dir=folder, vocabulary=config.get("vocabulary"))
    name = str(name_or_dir) if str(name_or_dir) in shipped_models() else folder.name
    return Segmenter(model, config, text_encoder=encoder, device=dev, name=name, folder=folder)


def segment(
    image: Any,
    prompts: str | Sequence[str] | None = None,
    *,
    points: Any = None,
    box: Any = None,
    space: str = "world",
    zoom: bool = False,
    model: str | os.PathLike | Segmenter = DEFAULT_MODEL,
    modality: str | None = None,
    on_untrained: str = "error",
    device: str = "auto",
    overlap: float | None = None,
    threshold: float = 0.5,
    presence_gating: bool = True,
    presence_veto: float = PRESENCE_VETO,
    largest_component: bool = True,
    progress: bool = False,
    probabilities: bool = False,
) -> Segmentation:
    """Segment a 3D volume from text prompts (loads the model once per process and caches it).

    Thread-safe: concurrent calls for one model load it once and share it;
    :func:`clear_cache` frees it (calls already running keep their model).

    Args:
        image: path (NIfTI, MGZ, NRRD, DICOM folder), nibabel image, Volume or ``(array, affine)``.
        prompts: one prompt or a list, e.g. ``"liver"`` or ``["liver", "left kidney", "ribs"]``.
        points, box, space: clicks and a box steering the prompt(s), in world mm (RAS) or input
            voxels (see :meth:`Segmenter.segment`); points or a box alone need no text.
        zoom: zoom-out-zoom-in on each structure's region (finer grid, slower).
        model: shipped model name, model folder, or a loaded :class:`Segmenter`.
        modality: ``"ct" | "mr" | "pet"``; default: taken from the volume (DICOM tag, NIfTI
            description, else an intensity guess between CT and MR, logged).
        on_untrained: ``"error"`` (default) | ``"empty"`` | ``"text"``: what a prompt the model was
            not trained on gets (see :meth:`Segmenter.segment`: by default no mask at all, since a
            mask for a structure the model never learnt is arbitrary and an empty one reads as
            "absent").
        device: ``"auto"`` (cuda if available), ``"cpu"`` or ``"cuda"``.
        overlap: sliding-window overlap; threshold: mask probability threshold.
        presence_gating, presence_veto: let a window veto a prompt whose presence probability there
            is below ``presence_veto`` (see Segmenter.segment).
        largest_component: apply the model's connected-component rule (:mod:`sat.postprocess`).
        progress: show a progress bar.
        probabilities: also keep ``seg.probabilities[prompt]`` (float32, input grid).

    Returns:
        :class:`~sat.segmentation.Segmentation`: ``seg["liver"]`` is a bool array of the input's shape.

    Example:
        >>> seg = segment("ct.nii.gz", ["liver", "left kidney"])      # doctest: +SKIP
        >>> seg.volumes_ml()                                          # doctest: +SKIP
    """
    segmenter = model if isinstance(model, Segmenter) else _cached_model(model, device)
    return segmenter.segment(image, prompts, points=points, box=box, space=space, zoom=zoom, modality=modality, on_untrained=on_untrained, overlap=overlap,
                             threshold=threshold, presence_gating=presence_gating, presence_veto=presence_veto,
                             largest_component=largest_component, progress=progress, probabilities=probabilities)


def _cached_model(model: str | os.PathLike, device: str) -> Segmenter:
    """The Segmenter of ``model`` on ``device``, loaded once per process (thread-safe; keeps one model)."""
    key = (str(model_dir(model)), str(resolve_device(device)))
    with _CACHE_LOCK:
        segmenter = _CACHE.get(key)
        if segmenter is None:
            segmenter = load_model(model, device=device)
            _CACHE.clear()  # keep one model in memory
            _CACHE[key] = segmenter
    return segmenter  # a reference of our own: clear_cache() in another thread cannot take it away


def clear_cache() -> None:
    """Forget the model :func:`segment` keeps loaded (safe while other threads segment with it).

    Calls already running finish with the model they have; the next call loads it again.
    """
    with _CACHE_LOCK:
        _CACHE.clear()
