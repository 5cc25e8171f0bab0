"""Grid helpers behind :mod:`sat.preprocess`: exact reorientation, resizing, nearest indexing.

Resizing follows the "same field of view" convention (as ``torch.nn.functional.interpolate``
with ``align_corners=False``): an axis of ``n`` voxels resized to ``m`` keeps its outer
edges, so output voxel ``j`` is centred on input coordinate ``(j + 0.5) * n / m - 0.5``.

Large images are resized by :func:`resize_linear_slabs`, which reads the input slab by slab
(any real dtype, e.g. int16 CT) and never holds a float32 copy of it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

Ornt = np.ndarray  # nibabel orientation array (3, 2): [target axis, flip]
SLAB_BYTES = 32 << 20  # float32 input read at a time by resize_linear_slabs


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


def axis_weights(n_in: int, n_out: int, rows: range) -> tuple[int, np.ndarray]:
    """Output ``rows`` of :func:`resize_linear` along one axis as ``(first input index, weights)``.

    ``weights`` is ``[len(rows), k]`` float64 over inputs ``first .. first + k - 1``: the box
    average of torch's adaptive pooling (``floor(j n / m) .. ceil((j + 1) n / m)``) when the
    axis shrinks, linear interpolation (``align_corners=False``, clamped at 0) when it grows.
    """
    j = np.arange(rows.start, rows.stop)
    if n_out <= n_in:
        lo, hi = (j * n_in) // n_out, -((-(j + 1) * n_in) // n_out)
        first = int(lo[0])
        weights = np.zeros((j.size, int(hi[-1]) - first))
        for r, (a, b) in enumerate(zip(lo - first, hi - first, strict=True)):
            weights[r, a:b] = 1.0 / (b - a)
        return first, weights
    src = np.maximum((j + 0.5) * (n_in / n_out) - 0.5, 0.0)
    i0 = np.floor(src).astype(np.intp)
    frac, i1 = src - i0, np.minimum(i0 + 1, n_in - 1)
    first = int(i0[0])
    weights = np.zeros((j.size, int(i1[-1]) - first + 1))
    np.add.at(weights, (np.arange(j.size), i0 - first), 1.0 - frac)
    np.add.at(weights, (np.arange(j.size), i1 - first), frac)
    return first, weights


def resize_linear_slabs(array: np.ndarray, size: Sequence[int], *, slab_bytes: int | None = None) -> torch.Tensor:
    """:func:`resize_linear` of a 3D ``array`` of any real dtype: ``[X, Y, Z]`` -> ``[1, *size]`` float32.

    The same linear map, applied axis by axis (it is separable): each slab of input rows
    (``slab_bytes`` as float32, default :data:`SLAB_BYTES`) is resized in-plane by
    :func:`resize_linear`, then combined along the first axis with :func:`axis_weights`.
    Extra memory: a slab and the output. Equal to :func:`resize_linear` within float32 rounding.
    """
    size = tuple(int(s) for s in size)
    n_in, plane = int(array.shape[0]), math.prod(int(n) for n in array.shape[1:])
    slab_bytes = SLAB_BYTES if slab_bytes is None else int(slab_bytes)
    step = max(1, min(size[0], (slab_bytes // (4 * plane)) * size[0] // n_in))
    out = torch.empty((1, *size), dtype=torch.float32)
    for j0 in range(0, size[0], step):
        rows = range(j0, min(j0 + step, size[0]))
        first, weights = axis_weights(n_in, size[0], rows)
        slab = torch.from_numpy(np.ascontiguousarray(array[first:first + weights.shape[1]], dtype=np.float32))
        flat = resize_linear(slab[None], (slab.shape[0], *size[1:]))[0].reshape(slab.shape[0], -1)
        out[0, rows.start:rows.stop] = (torch.from_numpy(weights.astype(np.float32)) @ flat).reshape(len(rows), *size[1:])
    return out
