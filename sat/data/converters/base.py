"""What a converter returns (:class:`CaseSource`) and how a case is read into (image, label map).

A converter is a function ``(root: Path, card: DatasetCard) -> list[CaseSource]``
that only *finds* files; :func:`load_case` reads them, brings every label file
onto the image grid in physical space (nearest neighbour; labels stored on a
flipped or finer grid are handled here) and merges them into one label map of
the card's label values.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sat.errors import InputError

log = logging.getLogger(__name__)
NIFTI_ENDINGS = (".nii.gz", ".nii", ".mha", ".nrrd", ".mgz")


@dataclass(frozen=True)
class LabelPart:
    """One label file of a case.

    ``values`` maps values in the file to card label values (None: keep values
    as they are). ``kind`` is ``"file"`` (any format sat.io reads) or
    ``"png_slices"`` (a folder of 2D PNG masks, one per DICOM file of
    ``reference``, paired in file-name order; ``png_step`` divides grey levels).
    """

    path: Path
    values: dict[int, int] | None = None
    kind: str = "file"
    reference: Path | None = None
    png_step: int = 0


@dataclass(frozen=True)
class CaseSource:
    """The files of one case: an image (file or DICOM folder) and its label parts (later parts win)."""

    case: str
    image: Path
    labels: tuple[LabelPart, ...]
    split: str | None = None  # split stated by the layout itself (None: the card decides)
    channel: int | None = None  # channel of a 4D image to use

    def inputs(self) -> list[Path]:
        """Every file the case is read from (folders expanded), for up-to-date checks."""
        paths = [self.image] + [p.path for p in self.labels]
        out: list[Path] = []
        for p in paths:
            out.extend(sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p])
        return out

    def labelled_values(self, card_values: Iterable[int]) -> set[int]:
        """Card label values this case annotates (a part with a value map annotates only its targets)."""
        card_values = set(card_values)
        out: set[int] = set()
        for part in self.labels:
            out |= card_values if part.values is None else set(part.values.values()) & card_values
        return out


def safe_case_id(text: str) -> str:
    """A file-name-safe case id (letters, digits, '_', '-', '.')."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._")
    if not cleaned:
        raise InputError(f"case name {text!r} has no usable characters: rename the file")
    return cleaned


def strip_ending(name: str) -> str:
    """File name without a medical-image ending (``a.nii.gz`` -> ``a``)."""
    for ending in NIFTI_ENDINGS:
        if name.endswith(ending):
            return name[: -len(ending)]
    return name


def image_files(folder: Path, pattern: str = "*") -> list[Path]:
    """Image files in ``folder`` matching ``pattern`` (hidden and macOS ``._`` files skipped), sorted."""
    if not folder.is_dir():
        return []
    return sorted(
        p for p in folder.glob(pattern)
        if p.is_file() and not p.name.startswith(".") and p.name.endswith(NIFTI_ENDINGS)
    )


def require_dir(path: Path, what: str) -> Path:
    """Return ``path`` if it is a folder, else raise an InputError naming the expected layout."""
    if not path.is_dir():
        raise InputError(f"{path} not found: expected {what}")
    return path


def pair_folders(images: Path, labels: Path, *, image_suffix: str = "", split: str | None = None,
                 channel: int | None = None) -> list[CaseSource]:
    """Pair ``images/<case><image_suffix>.ext`` with ``labels/<case>.ext`` (cases without a label skipped)."""
    by_case = {strip_ending(p.name): p for p in image_files(labels)}
    cases = []
    for img in image_files(images):
        stem = strip_ending(img.name)
        if image_suffix:
            if not stem.endswith(image_suffix):
                continue
            stem = stem[: -len(image_suffix)]
        if stem in by_case:
            cases.append(CaseSource(safe_case_id(stem), img, (LabelPart(by_case[stem]),), split, channel))
    return cases


# ----------------------------------------------------------------------------- reading


def _load_image(source: CaseSource, modality: str | None):
    from sat import io

    if source.channel is None:
        return io.load(source.image, modality=modality)
    import nibabel as nib

    img = nib.load(str(source.image))
    if img.ndim != 4 or source.channel >= img.shape[3]:
        raise InputError(f"{source.image}: channel {source.channel} requested but the image has shape {img.shape}")
    data = np.asarray(img.dataobj[..., source.channel], dtype=np.float32)
    return io.load((data, img.affine), modality=modality)


def on_grid(array: np.ndarray, affine: np.ndarray, shape: tuple[int, ...], target: np.ndarray) -> np.ndarray:
    """Nearest-neighbour resampling of a label ``array`` (voxel->mm ``affine``) onto ``shape``/``target`` grid."""
    if tuple(array.shape) == tuple(shape) and np.allclose(affine, target, atol=1e-3):
        return array
    from scipy.ndimage import affine_transform

    # target voxel -> mm -> source voxel
    matrix = np.linalg.inv(affine) @ target
    return affine_transform(array, matrix[:3, :3], offset=matrix[:3, 3], output_shape=tuple(shape), order=0,
                            mode="constant", cval=0, prefilter=False)


def remap(array: np.ndarray, values: dict[int, int] | None) -> np.ndarray:
    """Map label values through ``values`` (missing -> 0); None returns ``array`` as int32."""
    array = np.asarray(array)
    if array.dtype.kind == "f":
        array = np.rint(array)
    array = array.astype(np.int64, copy=False)
    if values is None:
        return array.astype(np.int32)
    top = max(int(array.max(initial=0)), max(values, default=0))
    if top > 1_000_000:  # sparse huge values: map through the unique values instead of a lookup table
        uniq, inverse = np.unique(array, return_inverse=True)
        return np.array([values.get(int(u), 0) for u in uniq], dtype=np.int32)[inverse].reshape(array.shape)
    lut = np.zeros(top + 1, dtype=np.int32)
    for src, dst in values.items():
        if src >= 0:
            lut[src] = dst
    return lut[np.clip(array, 0, top)]


def _png_slices(part: LabelPart, shape: tuple[int, ...], affine: np.ndarray) -> np.ndarray:
    """Stack PNG masks (file-name order) onto the DICOM files of ``part.reference`` (file-name order)."""
    import SimpleITK as sitk  # noqa: N813

    dicoms = sorted(p for p in part.reference.iterdir() if p.is_file() and not p.name.startswith("."))
    pngs = sorted(p for p in part.path.iterdir() if p.suffix.lower() == ".png")
    if len(dicoms) != len(pngs):
        raise InputError(f"{part.path}: {len(pngs)} PNG masks for {len(dicoms)} DICOM files in {part.reference}")
    out = np.zeros(shape, dtype=np.int32)
    inv = np.linalg.inv(affine)
    for dcm, png in zip(dicoms, pngs, strict=True):
        ref = sitk.ReadImage(str(dcm))
        mask = sitk.GetArrayFromImage(sitk.ReadImage(str(png)))
        mask = mask[..., 0] if mask.ndim == 3 else mask
        mask = np.rint(mask / part.png_step) if part.png_step else (mask > 0).astype(np.int32)
        # pixel (row r, col c) of this slice -> LPS mm -> RAS mm -> target voxel
        rows, cols = np.nonzero(mask)
        if rows.size == 0:
            continue
        direction = np.array(ref.GetDirection()).reshape(3, 3)
        index = np.stack([cols, rows, np.zeros_like(rows)]).astype(float) * np.array(ref.GetSpacing())[:, None]
        lps = (np.array(ref.GetOrigin())[:, None] + direction @ index).T
        ras = np.c_[-lps[:, 0], -lps[:, 1], lps[:, 2], np.ones(len(lps))]
        ijk = np.rint((inv @ ras.T)[:3]).astype(int)
        keep = np.all((ijk >= 0) & (ijk < np.array(shape)[:, None]), axis=0)
        out[ijk[0, keep], ijk[1, keep], ijk[2, keep]] = mask[rows, cols][keep].astype(np.int32)
    return out


def _label_part(part: LabelPart, image) -> np.ndarray:
    if part.kind == "png_slices":
        return remap(_png_slices(part, image.shape, image.affine), part.values)
    from sat import io

    lab = io.load_label(part.path)
    array = np.asarray(lab.array)
    if array.ndim == 4 and array.shape[3] == 1:
        array = array[..., 0]
    if array.ndim != 3:
        raise InputError(f"{part.path}: label map must be 3D, got shape {array.shape}")
    return remap(on_grid(array, lab.affine, image.shape, image.affine), part.values)


def load_case(source: CaseSource, *, modality: str | None = None,
              known: Iterable[int] | None = None):
    """Read a case: returns (image Volume, int32 label map on the image grid with card label values).

    Values not in ``known`` (when given) are set to 0 and logged once per case.
    """
    image = _load_image(source, modality)
    label = np.zeros(image.shape, dtype=np.int32)
    for part in source.labels:
        part_map = _label_part(part, image)
        inside = part_map > 0
        label[inside] = part_map[inside]
    if known is not None:
        present = np.unique(label)
        unknown = sorted(set(present.tolist()) - set(known) - {0})
        if unknown:
            log.warning("%s: label values %s are not in the card; set to background", source.case, unknown[:10])
            label[np.isin(label, unknown)] = 0
    return image, label
