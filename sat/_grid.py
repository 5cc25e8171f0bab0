"""Grid helpers behind :mod:`sat.preprocess`: exact reorientation, resizing, nearest indexing.

Resizing follows the "same field of view" convention (as ``torch.nn.functional.interpolate``
with ``align_corners=False``): an axis of ``n`` voxels resized to ``m`` keeps its outer
edges, so output voxel ``j`` is centred on input coordinate ``(j + 0.5) * n / m - 0.5``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

Ornt = np.ndarray  # nibabel orientation array (3, 2): [target axis, flip]


def orientation_transform(affine: np.ndarray, codes: str) -> Ornt:
    """nibabel orientation transform taking an array with ``affine`` to axis codes ``codes``."""
    import nibabel as nib

    start = nib.orientations.io_orientation(affine)
    return nib.orientations.ornt_transform(start, nib.orientations.axcodes2ornt(tuple(codes)))


def reorient(array: np.ndarray, ornt: Ornt, *, channel_first: bool = False) -> np.ndarray:
    """Flip/permute the 3 spatial axes of ``array`` ([X,Y,Z] or [C,X,Y,Z]); exact, no interpolation."""
    import nibabel as nib

    if channel_first:
        moved = np.moveaxis(array, 0, -1)
        return np.ascontiguousarray(np.moveaxis(nib.orientations.apply_orientation(moved, ornt), -1, 0))
    return np.ascontiguousarray(nib.orientations.apply_orientation(array, ornt))


def reoriented_affine(affine: np.ndarray, ornt: Ornt, shape: Sequence[int]) -> np.ndarray:
    """Affine of the array produced by :func:`reorient` from an array of ``shape`` with ``affine``."""
    import nibabel as nib

    return np.asarray(affine, dtype=np.float64) @ nib.orientations.inv_ornt_aff(ornt, tuple(shape))


def inverse_ornt(ornt: Ornt) -> Ornt:
    """Orientation transform undoing ``ornt``."""
    inv = np.zeros_like(ornt)
    for axis, (target, flip) in enumerate(np.asarray(ornt)):
        inv[int(target)] = (axis, flip)
    return inv


def resized_affine(affine: np.ndarray, shape_in: Sequence[int], shape_out: Sequence[int]) -> np.ndarray:
    """Affine of a grid resized from ``shape_in`` to ``shape_out`` over the same field of view."""
    scale = np.asarray(shape_in, dtype=np.float64) / np.asarray(shape_out, dtype=np.float64)
    step = np.eye(4)
    step[:3, :3] = np.diag(scale)
    step[:3, 3] = (scale - 1.0) / 2.0
    return np.asarray(affine, dtype=np.float64) @ step


def nearest_indices(n_in: int, n_out: int) -> np.ndarray:
    """Input index whose voxel contains the centre of each output voxel (nearest, exact)."""
    centres = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out)
    return np.minimum(np.floor(centres).astype(np.intp), n_in - 1)


def resize_nearest(array: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """Nearest resize of the last three axes of ``array``; keeps the dtype."""
    out = array
    lead = array.ndim - 3
    for axis, n_out in enumerate(size):
        n_in = out.shape[lead + axis]
        if n_in != n_out:
            out = np.take(out, nearest_indices(n_in, int(n_out)), axis=lead + axis)
    return np.ascontiguousarray(out)


def resize_linear(array: np.ndarray | torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Resize ``[C, X, Y, Z]`` float32 to ``[C, *size]``: box average along shrinking axes
    (anti-aliased, MONAI ``Resize(mode="area")``), then trilinear along growing axes."""
    from monai.transforms import Resize

    data = torch.as_tensor(array, dtype=torch.float32)
    shape = tuple(data.shape[1:])
    size = tuple(int(s) for s in size)
    shrunk = tuple(min(n, s) for n, s in zip(shape, size, strict=True))
    if shrunk != shape:
        data = Resize(shrunk, mode="area")(data)
    if shrunk != size:
        data = Resize(size, mode="trilinear", align_corners=False)(data)
    return data.as_tensor() if hasattr(data, "as_tensor") else data
