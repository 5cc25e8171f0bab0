"""Simulated users: clicks and boxes drawn from a reference mask (training and evaluation).

- :func:`error_click`: the click a careful user makes next, at the most interior voxel of the
  largest error region (positive in a missed region, negative in a false one), as the
  interactive-segmentation protocols of DeepIGeoS, SAM and VISTA3D do.
- :func:`random_clicks`: positive clicks inside a reference, negative ones in a shell around it.
- :func:`reference_box`: the box a user draws around the reference (stray specks of the label
  left out), optionally jittered.

All coordinates are voxel indices of the arrays given (``(x, y, z, label)``, label 1 positive).

Example:
    >>> import numpy as np
    >>> ref = np.zeros((20, 20, 20), bool); ref[5:15, 5:15, 5:15] = True
    >>> error_click(np.zeros_like(ref), ref)
    (9, 9, 9, 1)
    >>> reference_box(ref)
    (5, 5, 5, 14, 14, 14)
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from sat.postprocess import bounding_box, without_specks

__all__ = ["SPECK_SHARE", "click_sequence", "error_click", "random_clicks", "reference_box"]

SPECK_SHARE = 0.01  # a piece of a reference smaller than this share of it is a stray speck, not drawn around


def _interior(region: np.ndarray, rng: np.random.Generator | None, spread: float) -> tuple[int, int, int]:
    """The voxel of ``region`` farthest from its border (``rng``: one at random among those at least
    ``spread`` times that far)."""
    box = bounding_box(region)
    dist = ndimage.distance_transform_edt(np.pad(region[box], 1))[1:-1, 1:-1, 1:-1]
    if rng is None or spread >= 1.0:
        local = np.unravel_index(int(np.argmax(dist)), dist.shape)
    else:
        candidates = np.argwhere(dist >= spread * dist.max())
        local = tuple(candidates[rng.integers(len(candidates))])
    return tuple(int(i + s.start) for i, s in zip(local, box, strict=True))  # type: ignore[return-value]


def _largest_error(pred: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray | None, bool]:
    """(largest connected error region, whether it is missed rather than false); (None, True) if none."""
    best, best_size, positive = None, 0, True
    for is_missed, error in ((True, reference & ~pred), (False, pred & ~reference)):
        if not error.any():
            continue
        labels, _ = ndimage.label(error)
        sizes = np.bincount(labels.ravel())[1:]
        k = int(np.argmax(sizes))
        if sizes[k] > best_size:
            best, best_size, positive = labels == k + 1, int(sizes[k]), is_missed
    return best, positive


def error_click(pred: np.ndarray, reference: np.ndarray, *, rng: np.random.Generator | None = None,
                spread: float = 1.0) -> tuple[int, int, int, int] | None:
    """Next corrective click: inside the largest connected error region of ``pred`` against ``reference``.

    Args:
        pred, reference: bool [X, Y, Z].
        rng, spread: choose at random among the voxels at least ``spread`` times as deep as the
            deepest (training; default: the deepest, deterministic).

    Returns:
        ``(x, y, z, 1)`` in a missed region, ``(x, y, z, 0)`` in a false one, or None when ``pred``
        equals ``reference``.
    """
    best, positive = _largest_error(np.asarray(pred, bool), np.asarray(reference, bool))
    if best is None:
        return None
    return (*_interior(best, rng, spread), int(positive))


def click_sequence(pred: np.ndarray, reference: np.ndarray, n: int, *, rng: np.random.Generator | None = None,
                   spread: float = 1.0) -> list[tuple[int, int, int, int]]:
    """Up to ``n`` corrective clicks, each in the largest error left once the previous clicks'
    regions count as corrected (a training-time stand-in for re-running the model)."""
    pred, reference = np.array(pred, bool), np.asarray(reference, bool)
    clicks = []
    for _ in range(n):
        region, positive = _largest_error(pred, reference)
        if region is None:
            break
        clicks.append((*_interior(region, rng, spread), int(positive)))
        pred[region] = reference[region]
    return clicks


def random_clicks(reference: np.ndarray, rng: np.random.Generator, *, positive: int, negative: int,
                  shell: int = 6) -> list[tuple[int, int, int, int]]:
    """``positive`` clicks inside ``reference`` and ``negative`` ones within ``shell`` voxels outside it."""
    reference = np.asarray(reference, bool)
    out: list[tuple[int, int, int, int]] = []
    inside = np.argwhere(reference)
    if len(inside) and positive:
        for i in rng.choice(len(inside), size=positive):
            out.append((*(int(v) for v in inside[i]), 1))
    if negative and reference.any():
        ring = np.argwhere(ndimage.binary_dilation(reference, iterations=shell) & ~reference)
        if len(ring):
            for i in rng.choice(len(ring), size=negative):
                out.append((*(int(v) for v in ring[i]), 0))
    return out  # type: ignore[return-value]


def reference_box(reference: np.ndarray, *, rng: np.random.Generator | None = None,
                  jitter: int = 0) -> tuple[int, ...] | None:
    """Inclusive box ``(x0, y0, z0, x1, y1, z1)`` a user draws around a bool mask (None when empty):
    the bounding box of its pieces holding at least :data:`SPECK_SHARE` of its voxels, so stray
    specks of a drawn label do not stretch it; with ``rng`` each side moves by up to ``jitter``
    voxels either way (clipped to the array)."""
    reference = np.asarray(reference, bool)
    found = bounding_box(without_specks(reference, SPECK_SHARE))
    if found is None:
        return None
    lo = [s.start for s in found]
    hi = [s.stop - 1 for s in found]
    if rng is not None and jitter:
        lo = [int(np.clip(v + rng.integers(-jitter, jitter + 1), 0, n - 1)) for v, n in zip(lo, reference.shape, strict=True)]
        hi = [int(np.clip(v + rng.integers(-jitter, jitter + 1), a, n - 1))
              for v, a, n in zip(hi, lo, reference.shape, strict=True)]
    return (*lo, *hi)
