"""The result of a segmentation: one mask per prompt and a label map, on the input's own grid.

Masks are stored compactly (cropped to their bounding box, or, from :func:`sat.segment`, in
model space with an exact lookup onto the input grid): a 512x512x300 CT with 60 prompts does
not hold 60 full-size arrays. ``seg[prompt]`` builds the full-size bool array on access.

Example:
    >>> import numpy as np
    >>> from sat.segmentation import Segmentation
    >>> liver = np.zeros((4, 4, 4), bool); liver[1:3, 1:3, 1:3] = True
    >>> seg = Segmentation({"liver": liver}, np.diag([2.0, 2.0, 2.0, 1.0]))
    >>> seg["liver"].sum(), seg.labelmap.max(), float(seg.volumes_ml()["ml"][0])
    (np.int64(8), np.uint8(1), 0.064)
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sat.errors import InputError
from sat.postprocess import bounding_box

log = logging.getLogger(__name__)

__all__ = ["Label", "Segmentation"]



@dataclass(frozen=True)
class Label:
    """What one label value of a :class:`Segmentation` stands for.

    Attributes:
        value: label value in ``labelmap`` (1..N in prompt order).
        prompt: the prompt as given (whitespace stripped).
        concept: knowledge-tree concept id it resolved to, or None (free text).
        name: the concept's preferred name, or None.
        kind: ``"concept"`` (a trained class), ``"union"`` (a parent: union of its trained
            descendants), ``"text"`` (embedded as free text: open vocabulary, unvalidated) or
            ``"empty"`` (not trained: no mask was computed; empty means "not segmented", not "absent").
        members: the trained concept ids whose masks were used (empty for ``"text"`` and ``"empty"``).
        matched: how the prompt matched the knowledge tree ("id", "exact", "bag", "laterality",
            "typo", ...; "none": not resolved).
        missing: labelled parts of the concept the model was not trained on, left out of a union.
        note: one line saying how the prompt was answered.
    """

    value: int
    prompt: str
    concept: str | None = None
    name: str | None = None
    kind: str = "text"
    members: tuple[str, ...] = field(default_factory=tuple)
    matched: str | None = None
    missing: tuple[str, ...] = field(default_factory=tuple)
    note: str = ""


class _Crop:
    """A bool mask stored as its bounding box and the data inside it."""

    __slots__ = ("box", "data", "voxels")

    def __init__(self, mask: np.ndarray, offset: Sequence[int] = (0, 0, 0)) -> None:
        mask = np.asarray(mask, dtype=bool)
        local = bounding_box(mask)
        if local is None:
            self.box = (slice(0, 0),) * 3
            self.data = np.zeros((0, 0, 0), dtype=bool)
        else:
            self.data = np.ascontiguousarray(mask[local])
            self.box = tuple(slice(s.start + o, s.stop + o) for s, o in zip(local, offset, strict=True))
        self.voxels = int(np.count_nonzero(self.data))

    def full(self, shape: tuple[int, int, int]) -> np.ndarray:
        out = np.zeros(shape, dtype=bool)
        out[self.box] = self.data
        return out


class _MaskView(Mapping):
    """Read-only mapping prompt -> full-size bool mask (built on access)."""

    def __init__(self, seg: Segmentation) -> None:
        self._seg = seg

    def __getitem__(self, prompt: str) -> np.ndarray:
        return self._seg[prompt]

    def __iter__(self) -> Iterator[str]:
        return iter(self._seg.prompts)

    def __len__(self) -> int:
        return len(self._seg.prompts)


class _Probabilities(Mapping):
    """Read-only mapping prompt -> float32 probabilities on the input grid (when computed)."""

    def __init__(self, seg: Segmentation, arrays: Mapping[str, np.ndarray] | None) -> None:
        self._seg, self._arrays = seg, dict(arrays or {})

    def __getitem__(self, prompt: str) -> np.ndarray:
        if not self._arrays:
            raise KeyError("probabilities were not kept; segment with probabilities=True (CLI: --probabilities)")
        return self._arrays[self._seg._key(prompt)]

    def __iter__(self) -> Iterator[str]:
        return iter(self._arrays)

    def __len__(self) -> int:
        return len(self._arrays)


class Segmentation:
    """Masks for a list of prompts on the grid of the segmented image.

    Args:
        masks: prompt -> bool ``[X, Y, Z]`` array (all the same shape), in prompt order.
        affine: ``(4, 4)`` voxel -> RAS+ mm affine of the input image.
        labelmap: integer ``[X, Y, Z]``, value ``i`` = ``i``-th prompt (overlaps resolved by the
            caller, e.g. by highest probability); default: masks painted in order, first wins.
        labels: one :class:`Label` per prompt (default: free-text labels 1..N).
        image: the segmented image ``[X, Y, Z]`` (kept by reference, for :meth:`overlay_png`).
            Results of :func:`sat.segment` do not hold the image: they keep only the three
            planes their overlay shows (:class:`sat.overlay.Backdrop`), so ``image`` is None.
        modality: ``"ct" | "mr" | "pet" | None`` of the image.
        meta: provenance stored in labels.json (model name, threshold, ...).

    Attributes:
        affine, labelmap, labels (value -> :class:`Label`), masks (prompt -> bool array),
        image, modality, meta, probabilities (prompt -> float32 array of the input's shape; empty
        unless segmented with ``probabilities=True``).

    Example:
        >>> m = np.zeros((3, 3, 3), bool); m[1, 1, 1] = True
        >>> Segmentation({"spleen": m}, np.eye(4)).labels[1].prompt
        'spleen'
    """

    def __init__(
        self,
        masks: Mapping[str, np.ndarray],
        affine: np.ndarray,
        *,
        labelmap: np.ndarray | None = None,
        labels: Sequence[Label] | None = None,
        image: np.ndarray | None = None,
        modality: str | None = None,
        meta: dict[str, Any] | None = None,
    ) -> None:
        if not masks:
            raise InputError("a Segmentation needs at least one mask")
        shapes = {tuple(np.shape(m)) for m in masks.values()}
        if len(shapes) != 1 or len(next(iter(shapes))) != 3:
            raise InputError(f"all masks must be 3D arrays of one shape, got shapes {sorted(shapes)}")
        crops = {prompt: _Crop(mask) for prompt, mask in masks.items()}
        shape = next(iter(shapes))
        if labelmap is None:
            labelmap = _paint_in_order(list(masks.values()), shape)
        self._init(crops, shape, affine, labelmap, labels, image, modality, meta)

    @classmethod
    def _from_crops(
        cls, crops: dict[str, _Crop], shape: tuple[int, int, int], affine: np.ndarray, labelmap: np.ndarray, **kw: Any
    ) -> Segmentation:
        self = cls.__new__(cls)
        self._init(crops, shape, affine, labelmap, kw.get("labels"), kw.get("image"), kw.get("modality"), kw.get("meta"))
        self.probabilities = _Probabilities(self, kw.get("probabilities"))
        self._backdrop = kw.get("backdrop")
        return self

    def _init(self, crops, shape, affine, labelmap, labels, image, modality, meta) -> None:
        self._crops = crops
        self._shape = tuple(int(s) for s in shape)
        self.affine = np.array(affine, dtype=np.float64)
        if self.affine.shape != (4, 4):
            raise InputError(f"affine must be 4x4, got shape {self.affine.shape}")
        self.labelmap = np.asarray(labelmap)
        if self.labelmap.shape != self._shape or not np.issubdtype(self.labelmap.dtype, np.integer):
            raise InputError(f"labelmap must be an integer array of shape {self._shape}")
        prompts = list(crops)
        if labels is None:
            labels = [Label(value=i, prompt=p) for i, p in enumerate(prompts, start=1)]
        if [lab.prompt for lab in labels] != prompts:
            raise InputError("labels must list the prompts of the masks, in the same order")
        self.labels: dict[int, Label] = {lab.value: lab for lab in labels}
        self.image = image
        self._backdrop = None  # sat.overlay.Backdrop: the overlay's image planes, kept instead of the image
        self.modality = modality
        self.meta = dict(meta or {})
        self.masks: Mapping[str, np.ndarray] = _MaskView(self)
        self.probabilities: Mapping[str, np.ndarray] = _Probabilities(self, None)
        self._session = None  # sat.interactive.Session of a model's result: what refine() needs

    # -- access ---------------------------------------------------------------------------
    @property
    def prompts(self) -> list[str]:
        """The prompts, in label-value order."""
        return list(self._crops)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Grid size of the input image."""
        return self._shape  # type: ignore[return-value]

    @property
    def voxel_ml(self) -> float:
        """Volume of one voxel in millilitres (|det affine| mm^3 / 1000)."""
        return float(abs(np.linalg.det(self.affine[:3, :3]))) / 1000.0

    def _key(self, key: str) -> str:
        if key in self._crops:
            return key
        folded = str(key).strip().casefold()
        for lab in self.labels.values():
            if lab.prompt.casefold() == folded or (lab.concept or "").casefold() == folded:
                return lab.prompt
        raise KeyError(f"no mask for {key!r}; prompts are {self.prompts}")

    def __getitem__(self, key: str) -> np.ndarray:
        """Full-size bool mask of a prompt (exact prompt, case-insensitive prompt, or concept id)."""
        return self._crops[self._key(key)].full(self._shape)

    def __contains__(self, key: object) -> bool:
        try:
            self._key(str(key))
        except KeyError:
            return False
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(self._crops)

    def __len__(self) -> int:
        return len(self._crops)

    def __repr__(self) -> str:
        return f"Segmentation(shape={self._shape}, prompts={self.prompts})"

    def refine(self, prompt: str, *, add: Sequence = (), remove: Sequence = (), space: str = "world") -> Segmentation:
        """A corrected copy: clicks where ``prompt``'s structure is (``add``) or is not (``remove``).

        Only the model windows around the new clicks are recomputed, by the model's prompt head; the
        mask elsewhere is kept. Clicks are ``(x, y, z)`` in world mm (RAS), or input voxel indices
        with ``space="voxel"``; earlier clicks and boxes of the prompt stay in force.

        Raises:
            InputError: this result was not made by a model in this process (e.g. a Segmentation
                built from arrays, or one made with ``zoom=True``), no click, a click outside the image.

        Example:
            >>> seg = sat.segment("ct.nii.gz", "liver")                     # doctest: +SKIP
            >>> seg = seg.refine("liver", add=[(12.5, -40.0, 88.0)])        # doctest: +SKIP
        """
        session = getattr(self, "_session", None)
        if session is None:
            raise InputError("this segmentation cannot be refined: refine results of Segmenter.segment / sat.segment "
                             "made without zoom=True")
        return session.refine(prompt, add=add, remove=remove, space=space)

    def voxels(self, key: str) -> int:
        """Number of voxels in a prompt's mask (no full-size array is built)."""
        return self._crops[self._key(key)].voxels

    def volumes_ml(self):
        """Per-prompt volumes: pandas DataFrame with columns value, prompt, concept, name, voxels, ml.

        ``voxels``/``ml`` count the prompt's own mask (masks may overlap; the label map
        gives each voxel to one prompt only).
        """
        import pandas as pd

        rows = self.label_rows()
        columns = ["value", "prompt", "concept", "name", "voxels", "ml"]
        return pd.DataFrame([{k: r[k] for k in columns} for r in rows], columns=columns)

    def _row(self, lab: Label) -> dict[str, Any]:
        voxels = self._crops[lab.prompt].voxels
        return {**asdict(lab), "members": list(lab.members), "missing": list(lab.missing), "voxels": voxels,
                "ml": round(voxels * self.voxel_ml, 3)}

    # -- output ---------------------------------------------------------------------------
    def save(self, directory: str | os.PathLike, *, overlay: bool = False, probabilities: bool = False) -> Path:
        """Write ``labelmap.nii.gz``, one ``<prompt>.nii.gz`` mask per prompt and ``labels.json``
        (``overlay=True``: also ``overlay.png``; ``probabilities=True``: also
        ``probabilities/<prompt>.nii.gz``, float32).

        Every file has the input's shape and affine (sform and qform alike; a sheared affine is
        written as sform only, see :func:`sat.io.save`). The files are written to a hidden
        folder and moved into place only when all are complete, so an interrupted save never
        leaves a partial file. Saving into a folder that holds an earlier result replaces it:
        its ``labels.json`` goes first, the files it lists that this result does not write are
        removed, and the new ``labels.json`` comes last (a folder with a ``labels.json`` always
        holds exactly the files it lists; other files are left alone). See :mod:`sat.io.results`.

        Returns:
            The output directory.

        Raises:
            InputError: ``directory`` exists and is not a folder, or probabilities were asked
                but not kept.
        """
        from sat.io.results import save_result

        return save_result(self, directory, overlay=overlay, probabilities=probabilities)

    def label_rows(self) -> list[dict[str, Any]]:
        """One dict per label (its :class:`Label` fields, ``voxels`` and ``ml``), in label order."""
        return [self._row(lab) for lab in self.labels.values()]

    def overlay_png(self, path: str | os.PathLike, *, image: np.ndarray | None = None, dpi: int = 100) -> Path:
        """Save axial, coronal and sagittal overlays of the label map with a legend (PNG, atomic).

        Slices pass through the centre of the segmented voxels; radiological convention
        (patient's right on the left of axial and coronal views). ``image`` defaults to
        the segmented image (or, for results of :func:`sat.segment`, the planes of it kept
        for this purpose); without one, the labels are drawn on black.
        """
        path = Path(path).expanduser()
        if path.suffix.lower() != ".png":
            raise InputError(f"{path}: overlay_png writes PNG; name the file *.png")
        if path.is_dir():
            raise InputError(f"{path} is a folder; give a file name ending in .png")
        background = self.image if image is None else np.asarray(image)
        if background is not None and tuple(background.shape[:3]) != self._shape:
            raise InputError(f"image shape {background.shape} does not match the segmentation {self._shape}")
        if background is None:
            background = self._backdrop
        legend = [(lab.value, lab.prompt, self._crops[lab.prompt].voxels) for lab in self.labels.values()]
        from sat.overlay import render_overlay

        return render_overlay(path, self.labelmap, self.affine, legend, background, self.modality, dpi=dpi)


def _paint_in_order(masks: list[np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
    labelmap = np.zeros(shape, dtype=np.uint8 if len(masks) < 256 else np.uint16)
    for value in range(len(masks), 0, -1):  # first prompt wins where masks overlap
        labelmap[np.asarray(masks[value - 1], dtype=bool)] = value
    return labelmap
