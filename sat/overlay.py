"""Overlay rendering of a label map: axial, coronal and sagittal views with a legend (matplotlib).

An overlay shows three planes of the image, through the centre of the labelled voxels; a
:class:`Backdrop` keeps just those planes, so a result can draw its overlay later without
holding the image (a 1024x1024x1000 CT is 2-4 GB; its three planes a few MB).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sat._atomic import atomic_write

__all__ = ["Backdrop", "backdrop", "label_centre", "render_overlay"]

log = logging.getLogger(__name__)
_SLAB_VOXELS = 1 << 24
# (title, plane through the centre of a RAS array); horizontal axes are flipped when drawn so the
# patient's right is on the left (axial, coronal) and anterior on the left (sagittal)
_VIEWS = (
    ("axial", lambda a, c: a[:, :, c[2]]),
    ("coronal", lambda a, c: a[:, c[1], :]),
    ("sagittal", lambda a, c: a[c[0], :, :]),
)


@dataclass(frozen=True)
class Backdrop:
    """The image part of an overlay: its three planes (RAS display order) and display window.

    Attributes:
        centre: RAS index the planes pass through (the labels' centre when it was made).
        planes: axial ``[X, Y]``, coronal ``[X, Z]``, sagittal ``[Y, Z]`` copies of the image.
        window: grey-level range ``(low, high)``.
    """

    centre: tuple[int, int, int]
    planes: tuple[np.ndarray, ...]
    window: tuple[float, float]


def backdrop(image: np.ndarray, labelmap: np.ndarray, affine: np.ndarray, modality: str | None) -> Backdrop:
    """The planes of ``image`` an overlay of ``labelmap`` shows (copies: the image can be released)."""
    return _backdrop(image, affine, label_centre(_to_ras(labelmap, affine)[0]), modality)


def _backdrop(image: np.ndarray, affine: np.ndarray, centre: np.ndarray, modality: str | None) -> Backdrop:
    ras = _to_ras(image, affine)[0]  # a view
    planes = tuple(np.array(cut(ras, centre)) for _, cut in _VIEWS)
    return Backdrop(tuple(int(c) for c in centre), planes, _window(image, modality))


def label_centre(labels: np.ndarray) -> np.ndarray:
    """Rounded mean index of the voxels above 0 (the grid's middle if none), read slab by slab."""
    counts = [np.zeros(n, dtype=np.int64) for n in labels.shape]
    step = max(1, _SLAB_VOXELS // max(1, labels[:1].size))
    for i in range(0, labels.shape[0], step):
        hit = labels[i:i + step] > 0
        counts[0][i:i + step] = np.count_nonzero(hit, axis=(1, 2))
        counts[1] += np.count_nonzero(hit, axis=(0, 2))
        counts[2] += np.count_nonzero(hit, axis=(0, 1))
    total = int(counts[0].sum())
    if total == 0:
        return np.array(labels.shape) // 2
    return np.array([int(np.rint(float(np.dot(np.arange(c.size), c)) / total)) for c in counts])


def _to_ras(array: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flip/permute to RAS for display; returns (array, voxel size in mm)."""
    import nibabel as nib

    ornt = nib.orientations.io_orientation(affine)
    ras = nib.orientations.apply_orientation(array, ornt)
    zooms = np.linalg.norm(affine[:3, :3], axis=0)[np.argsort(ornt[:, 0])]
    return ras, zooms


def _window(image: np.ndarray, modality: str | None) -> tuple[float, float]:
    if modality == "ct":
        return -160.0, 240.0  # abdominal window W400 L40
    stride = max(1, int(np.ceil((image.size / 1_000_000) ** (1 / 3))))
    sample = image[::stride, ::stride, ::stride]  # ~1M voxels, no copy of the image
    lo, hi = np.percentile(sample, (1, 99))
    return float(lo), float(hi) if hi > lo else float(lo) + 1.0


def render_overlay(path, labelmap, affine, legend, image, modality, *, dpi: int) -> Path:
    """Write a PNG of three orthogonal slices through the labels' centre; legend = [(value, prompt, voxels)].

    ``image``: the image on the labelmap's grid, a :class:`Backdrop` of it, or None (labels only).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure

    labels, zooms = _to_ras(labelmap, affine)
    centre = label_centre(labels)
    shown = _backdrop(image, affine, centre, modality) if isinstance(image, np.ndarray) else image
    if shown is not None and not np.array_equal(shown.centre, centre):
        log.warning("the labelmap changed since the image planes were kept; drawing the labels without the image")
        shown = None
    palette = [c for name in ("tab20", "tab20b", "tab20c") for c in _colors(name)]
    n_values = int(labelmap.max()) + 1
    cmap = ListedColormap([(0, 0, 0, 0)] + [palette[(v - 1) % len(palette)] for v in range(1, n_values)])
    pixels = ((zooms[0], zooms[1]), (zooms[0], zooms[2]), (zooms[1], zooms[2]))  # (horizontal, vertical) mm
    fig = Figure(figsize=(15, 5.5))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 3)
    lo, hi = shown.window if shown is not None else (0.0, 1.0)
    for v, (ax, (title, cut), (dh, dv)) in enumerate(zip(axes, _VIEWS, pixels, strict=True)):
        lab = cut(labels, centre).T
        extent = (0, lab.shape[1] * dh, 0, lab.shape[0] * dv)
        grey = shown.planes[v].T if shown is not None else np.zeros(lab.shape)
        ax.imshow(grey, cmap="gray", vmin=lo, vmax=hi, origin="lower", extent=extent)
        ax.imshow(np.ma.masked_equal(lab, 0), cmap=cmap, vmin=0, vmax=n_values - 1, origin="lower",
                  extent=extent, alpha=0.5, interpolation="nearest")
        ax.invert_xaxis()
        ax.set_title(title)
        ax.set_axis_off()
    _legend(fig, legend, palette)
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=dpi, format="png"), suffix=".part.png")
    return path


def _legend(fig, legend, palette) -> None:
    from matplotlib.patches import Patch

    handles = [Patch(color=palette[(v - 1) % len(palette)], label=f"{v} {p}" + ("" if n else " (empty)"))
               for v, p, n in legend]
    ncol = max(1, -(-len(handles) // 30))
    right = 1.0 - 0.13 * ncol
    fig.subplots_adjust(left=0.01, right=right, top=0.92, bottom=0.02, wspace=0.04)
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(right + 0.005, 0.5), fontsize=7,
               ncol=ncol, frameon=False)


def _colors(name: str) -> list[tuple[float, float, float, float]]:
    from matplotlib import colormaps

    cmap = colormaps[name]
    return [cmap(i) for i in range(cmap.N)]
