"""Slice geometry of a DICOM series -> one regular, orthogonal voxel grid.

A reader that takes the distance between two slice origins as the slice spacing and the
normal of the image plane as the slice direction gets two kinds of series wrong:

- **sheared stacks** (gantry tilt): the slices are stacked along the table, not along their
  normal, so each slice is shifted in its own plane. The voxel grid is then sheared: the
  distance between slice origins overstates the slice spacing by ``1 / cos(tilt)`` (6.4 % at
  20 degrees, so every volume comes out 6.4 % too large) and anatomy drifts in-plane.
- **uneven stacks** (missing slices, mixed slice spacings): one spacing for the whole series
  puts every slice after a gap at the wrong position.

:func:`regularize` rebuilds the grid from every slice's ImagePositionPatient (IPP) and the
series' ImageOrientationPatient (IOP), as dcm2niix does. A stack whose slices all lie within
:data:`TOLERANCE` voxel of a regular orthogonal grid keeps its pixels as read (exact). Otherwise
the slices are resampled onto an orthogonal grid (slice spacing measured along the normal,
linear interpolation; nearest for label maps) and a WARNING says so:

- a sheared stack keeps its slices (each lies in a plane of the new grid) and shifts each one
  in-plane; the grid is widened to hold every shifted slice, the new border filled with the
  image minimum (air, for CT);
- an uneven stack is resampled to equidistant slices at its smallest slice spacing, as long as
  no gap exceeds :data:`MAX_GAP_RATIO` times that spacing (up to two consecutive slices
  missing); a larger gap (a series of several stacks, or many missing slices) is refused.

All positions are in DICOM patient coordinates (LPS, mm).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from sat.errors import InputError

log = logging.getLogger(__name__)

TOLERANCE = 0.1  # largest slice misplacement (fraction of a voxel) left uncorrected
MAX_GAP_RATIO = 3.0  # largest gap / smallest slice spacing that is interpolated
ORIENTATION_TOLERANCE = 1e-3  # IOP direction cosines that differ by less are one orientation
DUPLICATE_MM = 0.01  # slices closer than this along the normal share a position


@dataclass(frozen=True)
class Stack:
    """Geometry of the slices of one series, sorted along the slice normal.

    Attributes:
        row: unit vector (LPS) of the array's first axis (IOP row direction).
        col: unit vector (LPS) of the array's second axis (IOP column direction).
        pixel: pixel spacing in mm along ``row`` and ``col``.
        origins: ``(N, 3)`` IPP of each slice, sorted along the normal.
        order: index (in the reader's slice order) of each sorted slice.
    """

    row: np.ndarray
    col: np.ndarray
    pixel: tuple[float, float]
    origins: np.ndarray
    order: np.ndarray

    @property
    def normal(self) -> np.ndarray:
        """Unit slice normal ``row x col`` (the direction of the third array axis)."""
        return np.cross(self.row, self.col)

    @property
    def depth(self) -> np.ndarray:
        """``(N,)`` position of each slice along the normal, relative to the first (mm)."""
        return (self.origins - self.origins[0]) @ self.normal

    @property
    def shift(self) -> np.ndarray:
        """``(N, 2)`` in-plane offset of each slice origin from the first, in pixels along row, col."""
        rel = self.origins - self.origins[0]
        return np.stack([rel @ self.row / self.pixel[0], rel @ self.col / self.pixel[1]], axis=1)


def _unit(vector: np.ndarray, what: str, name: str) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    if not np.isfinite(norm) or norm < 1e-6:
        raise InputError(f"{name}: ImageOrientationPatient has a zero {what} direction; re-export the series")
    return vector / norm


def make_stack(orientations: np.ndarray, origins: np.ndarray, pixel: tuple[float, float], name: str) -> Stack:
    """Check the slices form one stack (one orientation, distinct positions) and sort them.

    Args:
        orientations: ``(N, 6)`` IOP of each slice, in the reader's order.
        origins: ``(N, 3)`` IPP of each slice, in the reader's order.
        pixel: pixel spacing along the row and column directions (mm).
        name: source shown in error messages.

    Raises:
        InputError: slices with another orientation (e.g. a localizer in the series), or two
            slices at one position (several echoes, phases or acquisitions in one series).
    """
    orientations = np.asarray(orientations, dtype=np.float64)
    odd = np.flatnonzero(np.abs(orientations - orientations[0]).max(axis=1) > ORIENTATION_TOLERANCE)
    if odd.size:
        raise InputError(
            f"{name}: {odd.size} of {len(orientations)} slices have another orientation than the first "
            "(a localizer or a reformat in the series); keep one orientation per folder"
        )
    row = _unit(orientations[0, :3], "row", name)
    col = _unit(orientations[0, 3:], "column", name)
    col = _unit(col - (col @ row) * row, "column", name)  # DICOM stores them orthogonal; remove rounding
    origins = np.asarray(origins, dtype=np.float64)
    order = np.argsort(origins @ np.cross(row, col), kind="stable")
    stack = Stack(row, col, (float(pixel[0]), float(pixel[1])), origins[order], order)
    close = np.flatnonzero(np.diff(stack.depth) < DUPLICATE_MM)
    if close.size:
        k = int(close[0])
        raise InputError(
            f"{name}: {close.size} slice position(s) hold more than one slice (e.g. slices {k + 1} and {k + 2} at "
            f"ImagePositionPatient {_ipp(stack.origins[k])}): the series holds several images per position (echoes, phases "
            "or repeated acquisitions); put each in its own folder"
        )
    return stack


def _ipp(point: np.ndarray) -> str:
    return "(" + ", ".join(f"{v:.1f}" for v in point) + ")"


def _target_depths(stack: Stack, name: str) -> tuple[np.ndarray, list[str]]:
    """Depths of the output slices along the normal and a note when they differ from the input's."""
    depth = stack.depth
    n = depth.size
    mean = float(depth[-1]) / (n - 1)
    if np.abs(depth - mean * np.arange(n)).max() <= TOLERANCE * mean:
        return mean * np.arange(n), []
    gaps = np.diff(depth)
    small, k = float(gaps.min()), int(np.argmax(gaps))
    where = (f"between slices {k + 1} and {k + 2} of {n}, ImagePositionPatient {_ipp(stack.origins[k])} and "
             f"{_ipp(stack.origins[k + 1])}")
    if gaps[k] > MAX_GAP_RATIO * small:
        raise InputError(
            f"{name}: the slice spacing varies from {small:.2f} to {gaps[k]:.2f} mm (largest gap {where}): "
            "slices are missing or the series mixes stacks; export the complete series or put each stack "
            "in its own folder"
        )
    count = int(round(float(depth[-1]) / small)) + 1
    spacing = float(depth[-1]) / (count - 1)
    missing = int(round(gaps[k] / small)) - 1
    note = (f"uneven slice spacing ({small:.2f} to {gaps[k]:.2f} mm, largest gap {where}"
            + (f", about {missing} slice(s) missing" if missing > 0 else "")
            + f"): resampled to {count} equidistant slices of {spacing:.3f} mm")
    return spacing * np.arange(count), [note]


def _plane_grid(stack: Stack, shape: tuple[int, int]) -> tuple[np.ndarray, tuple[int, int], list[str]]:
    """Lower corner (pixels, relative to slice 0), in-plane size of the output grid and a note if sheared."""
    shift = stack.shift
    if np.abs(shift).max() <= TOLERANCE:
        return np.zeros(2), shape, []
    low = np.minimum(0, np.floor(shift.min(axis=0) + TOLERANCE)).astype(int)
    high = np.maximum(0, np.ceil(shift.max(axis=0) - TOLERANCE)).astype(int)
    size = (shape[0] + int(high[0] - low[0]), shape[1] + int(high[1] - low[1]))
    note = (f"slices are sheared (gantry tilt {tilt_degrees(stack):.1f} degrees, {_drift(stack):.1f} mm in-plane "
            f"drift over the series): resampled onto an orthogonal grid of {size[0]}x{size[1]} pixels")
    return low.astype(np.float64), size, [note]


def _drift(stack: Stack) -> float:
    """In-plane distance (mm) between the last slice origin and the normal through the first."""
    return float(np.linalg.norm((stack.origins[-1] - stack.origins[0]) - stack.depth[-1] * stack.normal))


def tilt_degrees(stack: Stack) -> float:
    """Angle between the slice normal and the line through the first and last slice origins."""
    return float(np.degrees(np.arctan2(_drift(stack), stack.depth[-1])))


def _resample(array: np.ndarray, stack: Stack, low: np.ndarray, size: tuple[int, int], depths: np.ndarray,
              *, label: bool) -> np.ndarray:
    """Each output slice: the neighbouring input slices shifted onto the grid, blended along the normal."""
    from scipy import ndimage

    fill = 0 if label else float(array.min())
    dtype = array.dtype if label else np.float32
    cache: dict[int, np.ndarray] = {}

    def on_grid(k: int) -> np.ndarray:
        if k not in cache:
            offset = low - stack.shift[k]
            plane = array[..., int(stack.order[k])]
            cache[k] = ndimage.affine_transform(
                plane if label else plane.astype(np.float32), np.ones(2), offset=offset, output_shape=size,
                order=0 if label else 1, mode="grid-constant", cval=fill, prefilter=False)
        return cache[k]

    depth = stack.depth
    out = np.empty((*size, depths.size), dtype=dtype)
    for m, target in enumerate(depths):
        k = int(np.clip(np.searchsorted(depth, target, side="right") - 1, 0, depth.size - 2))
        w = float(np.clip((target - depth[k]) / (depth[k + 1] - depth[k]), 0.0, 1.0))
        if label or w < 1e-6 or w > 1 - 1e-6:
            out[..., m] = on_grid(k + int(round(w)))
        else:
            out[..., m] = (1.0 - w) * on_grid(k) + w * on_grid(k + 1)
        for old in [j for j in cache if j < k]:
            del cache[old]
    return out


def regularize(array: np.ndarray, stack: Stack, *, label: bool = False, name: str = "DICOM series"
               ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Put the slices of ``array`` on a regular orthogonal grid; return (array, LPS affine, geometry).

    Args:
        array: ``[X, Y, N]``, slice ``k`` read from the reader's ``k``-th file.
        stack: the slices' geometry (:func:`make_stack`).
        label: nearest instead of linear interpolation (keeps the dtype).
        name: source shown in messages.

    Returns:
        ``array [X', Y', K]`` (as given, slices sorted, when the stack is already regular; float32
        when resampled), its ``(4, 4)`` voxel -> LPS affine, and a dict for ``meta["geometry"]``:
        ``slice_spacing``, ``tilt_degrees``, ``resampled`` and the ``notes`` that were logged.
    """
    if array.shape[2] != len(stack.origins):
        raise InputError(f"{name}: {array.shape[2]} slices read but {len(stack.origins)} positions; re-export it")
    depths, spacing_notes = _target_depths(stack, name)
    low, size, shear_notes = _plane_grid(stack, array.shape[:2])
    spacing = float(depths[1] - depths[0])
    affine = np.eye(4)
    affine[:3, 0] = stack.row * stack.pixel[0]
    affine[:3, 1] = stack.col * stack.pixel[1]
    affine[:3, 2] = stack.normal * spacing
    affine[:3, 3] = stack.origins[0] + low[0] * affine[:3, 0] + low[1] * affine[:3, 1]
    notes = shear_notes + spacing_notes
    geometry: dict[str, Any] = {"slice_spacing": round(spacing, 6), "tilt_degrees": round(tilt_degrees(stack), 3),
                                "resampled": bool(notes), "notes": notes}
    if not notes:
        in_order = np.array_equal(stack.order, np.arange(stack.order.size))
        return (array if in_order else array[..., stack.order]), affine, geometry
    for note in notes:
        log.warning("%s: %s (%s interpolation)", name, note, "nearest" if label else "linear")
    return _resample(array, stack, low, size, depths, label=label), affine, geometry
