"""Standardise a volume for the model (crop, resample, reorient, normalise) and invert exactly.

Every step is recorded in a JSON-serialisable :class:`Record`; :func:`invert` replays the
record backwards, so a prediction lands on the input's own grid (same shape, same affine).

Order of the steps (all in the input's array axes until the last one):
1. optional crop to the foreground bounding box (+ ``margin_mm``);
2. resize each axis to ``round(extent / spacing)`` voxels over the same field of view
   (images: box average along shrinking axes, trilinear along growing ones; labels:
   nearest), so the model spacing is within half a voxel of the requested one over the
   field of view;
3. flip/permute the axes to ``orientation`` (exact, no interpolation);
4. intensity normalisation (:mod:`sat.preprocess.intensity`).

The resampling and reorientation helpers are in :mod:`sat.preprocess.grid`.

Example:
    >>> import numpy as np, sat.io, sat.preprocess as pp
    >>> vol = sat.io.load((np.random.rand(40, 40, 20) * 100, np.diag([1.0, 1.0, 3.0, 1.0])), modality="mr")
    >>> x, rec = pp.standardize(vol, spacing=2.0)
    >>> tuple(x.shape), rec.model_shape
    ((1, 20, 20, 30), (20, 20, 30))
    >>> pp.invert(x[0] > 0, rec).shape
    (40, 40, 20)
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from sat.errors import InputError
from sat.io import Volume, load, load_label
from sat.preprocess import grid as _grid
from sat.preprocess.intensity import (
    _MAX_STAT_VOXELS,
    ABDOMEN_WINDOW,
    CT_SCALE,
    CT_WINDOW,
    PERCENTILES,
    _sample,
    ct_scale_of,
    ct_window_of,
    normalize_intensity,
    normalize_official,
)

log = logging.getLogger(__name__)

__all__ = ["ABDOMEN_WINDOW", "CT_SCALE", "CT_WINDOW", "PERCENTILES", "Record", "ct_scale_of", "ct_window_of", "invert",
           "normalize_intensity", "normalize_official", "plan", "resample_to", "standardize", "standardize_label"]

@dataclass
class Record:
    """Everything :func:`invert` needs to map model space back onto the input grid.

    Shapes and boxes are in the input's array axes, except ``model_shape`` and
    ``model_affine`` (model space, after reorientation). ``to_dict``/``from_dict``
    round-trip through JSON.
    """

    original_shape: tuple[int, int, int]
    original_affine: list[list[float]]
    crop_box: list[list[int]]  # per input axis [start, stop)
    resampled_shape: tuple[int, int, int]  # input axes, before reorientation
    orientation: str
    ornt: list[list[float]]  # nibabel orientation transform input -> model axes
    model_shape: tuple[int, int, int]
    model_affine: list[list[float]]
    target_spacing: tuple[float, float, float]
    modality: str | None = None
    intensity: dict[str, Any] | None = None
    version: int = 1

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Actual model-space voxel size (mm), within half a voxel per field of view of the target."""
        return tuple(float(s) for s in np.linalg.norm(np.asarray(self.model_affine)[:3, :3], axis=0))  # type: ignore[return-value]

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Record:
        """Inverse of :meth:`to_dict`."""
        data = dict(data)
        for key in ("original_shape", "resampled_shape", "model_shape"):
            data[key] = tuple(int(v) for v in data[key])
        data["target_spacing"] = tuple(float(v) for v in data["target_spacing"])
        return cls(**data)


def _as_spacing(spacing: float | Sequence[float]) -> tuple[float, float, float]:
    values = (float(spacing),) * 3 if np.isscalar(spacing) else tuple(float(s) for s in spacing)  # type: ignore[arg-type]
    if len(values) != 3 or not all(np.isfinite(values)) or min(values) <= 0:
        raise InputError(f"spacing must be a positive number or 3 positive numbers (mm), got {spacing!r}")
    return values  # type: ignore[return-value]


def _foreground_box(array: np.ndarray, modality: str | None, margin: np.ndarray, *,
                    positive: bool = False) -> list[list[int]]:
    """Bounding box [start, stop) per axis of the body (CT: > -500 HU; else > 2 % of the range;
    ``positive``: voxels > 0, the original SAT's rule)."""
    if positive:
        threshold = 0.0
    elif modality == "ct":
        threshold = CT_WINDOW[0]
    else:
        sample = _sample(array)
        low = float(sample.min())
        threshold = low + 0.02 * (float(np.percentile(sample, PERCENTILES[1])) - low)
    seen = [np.zeros(n, dtype=bool) for n in array.shape]
    step = max(1, _MAX_STAT_VOXELS // (array.shape[1] * array.shape[2]))
    for i in range(0, array.shape[0], step):  # slab by slab: no full-size mask
        mask = array[i:i + step] > threshold
        seen[0][i:i + step] = mask.any(axis=(1, 2))
        seen[1] |= mask.any(axis=(0, 2))
        seen[2] |= mask.any(axis=(0, 1))
    box = []
    for axis in range(3):
        hits = np.flatnonzero(seen[axis])
        if hits.size == 0:
            return [[0, n] for n in array.shape]
        start = max(0, int(hits[0]) - int(margin[axis]))
        stop = min(array.shape[axis], int(hits[-1]) + 1 + int(margin[axis]))
        box.append([start, stop])
    return box


def _plan(volume: Volume, spacing: tuple[float, float, float], orientation: str, box: list[list[int]]) -> Record:
    ornt = _grid.orientation_transform(volume.affine, orientation)
    target = np.empty(3)
    for axis in range(3):  # spacing is given in model axes; map it onto input axes
        target[axis] = spacing[int(ornt[axis, 0])]
    crop_shape = np.array([b - a for a, b in box])
    extent = crop_shape * np.asarray(volume.spacing)
    resampled = tuple(int(n) for n in np.maximum(1, np.rint(extent / target)))
    shift = np.eye(4)
    shift[:3, 3] = [a for a, _ in box]
    affine = _grid.resized_affine(volume.affine @ shift, crop_shape, resampled)
    model_shape = tuple(int(resampled[int(np.flatnonzero(ornt[:, 0] == k)[0])]) for k in range(3))
    return Record(
        original_shape=volume.shape,
        original_affine=np.asarray(volume.affine, dtype=np.float64).tolist(),
        crop_box=box,
        resampled_shape=resampled,  # type: ignore[arg-type]
        orientation=orientation,
        ornt=np.asarray(ornt, dtype=float).tolist(),
        model_shape=model_shape,  # type: ignore[arg-type]
        model_affine=_grid.reoriented_affine(affine, ornt, resampled).tolist(),
        target_spacing=spacing,
        modality=volume.modality,
    )


def plan(
    reference: Volume,
    *,
    spacing: float | Sequence[float] = (1.5, 1.5, 1.5),
    orientation: str = "RAS",
    crop_box: Sequence[Sequence[int]] | None = None,
) -> Record:
    """The :class:`Record` :func:`standardize` would make for ``reference``'s grid, without
    touching intensities (e.g. to standardise a label map alone with :func:`standardize_label`).

    Example:
        >>> import numpy as np, sat.io
        >>> lab = sat.io.load_label((np.zeros((30, 30, 10), np.uint8), np.diag([1.0, 1.0, 3.0, 1.0])))
        >>> plan(lab, spacing=3.0).model_shape
        (10, 10, 10)
    """
    box = [[0, n] for n in reference.shape] if crop_box is None else [[int(a), int(b)] for a, b in crop_box]
    if len(box) != 3 or any(not 0 <= a < b <= n for (a, b), n in zip(box, reference.shape, strict=True)):
        raise InputError(f"crop_box {crop_box!r} must be 3 [start, stop) pairs inside shape {reference.shape}")
    return _plan(reference, _as_spacing(spacing), orientation.upper(), box)


def _crop(array: np.ndarray, box: list[list[int]]) -> np.ndarray:
    return array[tuple(slice(a, b) for a, b in box)]


def standardize(
    volume: Volume | Any,
    *,
    spacing: float | Sequence[float] = (1.5, 1.5, 1.5),
    orientation: str = "RAS",
    crop_foreground: bool | str = False,
    normalize: bool | str = True,
    margin_mm: float = 10.0,
    ct_scale: tuple[float, float] | None = CT_SCALE,
    ct_window: tuple[float, float] = CT_WINDOW,
) -> tuple[torch.Tensor, Record]:
    """Bring an image into model space.

    Args:
        volume: a :class:`~sat.io.Volume` or anything :func:`sat.io.load` accepts.
        spacing: target voxel size in mm (one number or 3, in ``orientation`` axis order).
        orientation: target axis codes, e.g. ``"RAS"``.
        crop_foreground: crop to the body's bounding box plus ``margin_mm`` first;
            ``"positive"``: to the bounding box of the voxels > 0, no margin (the original SAT).
        normalize: apply :func:`normalize_intensity` for ``volume.modality``;
            ``"official"``: :func:`normalize_official`.
        ct_scale: CT (center, scale) in HU, or ``None`` for a per-scan z-score
            (see :func:`normalize_intensity`).
        ct_window: CT clip range in HU (:data:`CT_WINDOW`; models trained on windowed sets use
            :data:`ABDOMEN_WINDOW`).

    Returns:
        ``(tensor [1, X', Y', Z'] float32, Record)``; invert predictions with :func:`invert`.

    Example:
        >>> import numpy as np, sat.io
        >>> ct = sat.io.load((np.full((64, 64, 10), -1000.0), np.diag([0.8, 0.8, 1.5, 1.0])))
        >>> x, rec = standardize(ct, spacing=3.0)
        >>> rec.model_shape
        (17, 17, 5)
    """
    volume = volume if isinstance(volume, Volume) else load(volume)
    spacing = _as_spacing(spacing)
    if crop_foreground:
        positive = crop_foreground == "positive"
        margin = np.zeros(3, int) if positive else np.ceil(margin_mm / np.asarray(volume.spacing)).astype(int)
        box = _foreground_box(volume.array, volume.modality, margin, positive=positive)
    else:
        box = [[0, n] for n in volume.shape]
    record = _plan(volume, spacing, orientation.upper(), box)
    log.debug("standardize: %s -> %s at %s mm", volume.shape, record.model_shape, spacing)
    data = _grid.resize_linear_slabs(_crop(volume.array, box), record.resampled_shape)  # no float32 copy of the input
    data = torch.from_numpy(_grid.reorient(data.numpy(), np.asarray(record.ornt), channel_first=True))
    if normalize == "official":
        data, record.intensity = normalize_official(data, volume.modality)
    elif normalize:
        data, record.intensity = normalize_intensity(data, volume.modality, ct_scale=ct_scale,
                                                         ct_window=ct_window)
    return data.contiguous(), record


def _check_same_grid(volume: Volume, record: Record, what: str) -> None:
    if volume.shape != tuple(record.original_shape) or not np.allclose(
        volume.affine, record.original_affine, atol=1e-3
    ):
        raise InputError(
            f"{what} grid {volume.shape} does not match the standardised image {tuple(record.original_shape)} "
            "(shape or affine); bring it onto the image grid with sat.preprocess.resample_to(label, image)"
        )


def standardize_label(label: Volume | Any, record: Record) -> torch.Tensor:
    """Map a label map on the original grid into model space (nearest): ``[X', Y', Z']`` int64.

    Example:
        >>> import numpy as np, sat.io
        >>> img = sat.io.load((np.zeros((8, 8, 8)), np.eye(4)), modality="mr")
        >>> _, rec = standardize(img, spacing=2.0)
        >>> standardize_label(sat.io.load_label((np.ones((8, 8, 8), np.uint8), np.eye(4))), rec).shape
        torch.Size([4, 4, 4])
    """
    label = label if isinstance(label, Volume) else load_label(label)
    _check_same_grid(label, record, "label")
    data = _grid.resize_nearest(_crop(label.array, record.crop_box), record.resampled_shape)
    data = _grid.reorient(data, np.asarray(record.ornt))
    return torch.from_numpy(data.astype(np.int64, copy=False))


def invert(
    prediction: np.ndarray | torch.Tensor, record: Record, *, mode: str = "nearest"
) -> np.ndarray:
    """Map a model-space prediction back onto the original grid (same shape, same affine).

    Args:
        prediction: ``[X', Y', Z']`` or ``[C, X', Y', Z']`` (``record.model_shape``), label
            map or probabilities, ndarray or tensor.
        record: the :class:`Record` returned by :func:`standardize`.
        mode: ``"nearest"`` (labels; dtype kept) or ``"linear"`` (probabilities; float32).

    Returns:
        ndarray ``[*record.original_shape]`` or ``[C, *record.original_shape]``; voxels
        outside a foreground crop are 0.

    Example:
        >>> import numpy as np, sat.io
        >>> _, rec = standardize(sat.io.load((np.zeros((9, 9, 9)), np.eye(4)), modality="mr"), spacing=3.0)
        >>> invert(np.ones((2, 3, 3, 3), np.float32), rec, mode="linear").shape
        (2, 9, 9, 9)
    """
    if mode not in ("nearest", "linear"):
        raise InputError(f"invert mode must be 'nearest' or 'linear', got {mode!r}")
    pred = prediction.detach().cpu().numpy() if isinstance(prediction, torch.Tensor) else np.asarray(prediction)
    squeeze = pred.ndim == 3
    pred = pred[None] if squeeze else pred
    if pred.ndim != 4 or tuple(pred.shape[1:]) != tuple(record.model_shape):
        raise InputError(
            f"prediction shape {tuple(prediction.shape)} does not match model space {tuple(record.model_shape)} "
            "(optionally with a leading channel axis); invert the output of standardize()"
        )
    pred = _grid.reorient(pred, _grid.inverse_ornt(np.asarray(record.ornt)), channel_first=True)
    crop_shape = [b - a for a, b in record.crop_box]
    if mode == "nearest":
        pred = _grid.resize_nearest(pred, crop_shape)
    else:
        pred = np.stack([_grid.resize_linear(c[None].astype(np.float32), crop_shape)[0].numpy() for c in pred])
    if [list(b) for b in record.crop_box] != [[0, n] for n in record.original_shape]:
        full = np.zeros((pred.shape[0], *record.original_shape), dtype=pred.dtype)
        full[(slice(None), *(slice(a, b) for a, b in record.crop_box))] = pred
        pred = full
    return pred[0] if squeeze else pred


def resample_to(volume: Volume, reference: Volume, *, mode: str = "nearest") -> Volume:
    """Resample ``volume`` onto ``reference``'s grid in physical (world mm) space.

    Use it to bring a label map stored on another grid (flipped, other spacing) onto its
    image. Voxels of the reference outside ``volume`` get 0.

    Args:
        volume: the volume to move (labels keep their dtype with ``mode="nearest"``).
        reference: the grid to land on (its shape and affine are used).
        mode: ``"nearest"`` (labels) or ``"linear"``.

    Returns:
        Volume with ``reference.shape`` and ``reference.affine``.

    Example:
        >>> import numpy as np, sat.io
        >>> lab = sat.io.load_label((np.arange(8, dtype=np.uint8).reshape(2, 2, 2), np.eye(4)))
        >>> flipped = np.diag([-1.0, 1, 1, 1]); flipped[0, 3] = 1.0
        >>> ref = sat.io.load((np.zeros((2, 2, 2)), flipped), modality="mr")
        >>> bool(resample_to(lab, ref).array[0, 0, 0] == lab.array[1, 0, 0])
        True
    """
    from scipy import ndimage

    if mode not in ("nearest", "linear"):
        raise InputError(f"resample_to mode must be 'nearest' or 'linear', got {mode!r}")
    index_map = np.linalg.solve(volume.affine, reference.affine)  # reference index -> volume index
    source = volume.array if mode == "nearest" else np.asarray(volume.array, dtype=np.float32)
    out = ndimage.affine_transform(
        source, index_map[:3, :3], offset=index_map[:3, 3], output_shape=reference.shape,
        order=0 if mode == "nearest" else 1, mode="grid-constant", cval=0, prefilter=False,
    )
    meta = {**volume.meta, "resampled_to": reference.meta.get("source", "reference")}
    return Volume(array=out, affine=np.array(reference.affine, dtype=np.float64), modality=volume.modality, meta=meta)
