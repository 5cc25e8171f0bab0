"""Overlay rendering of a label map: axial, coronal and sagittal views with a legend (matplotlib)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sat._atomic import atomic_write

__all__ = ["render_overlay"]


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
    sample = image.reshape(-1)[:: max(1, image.size // 1_000_000)]
    lo, hi = np.percentile(sample, (1, 99))
    return float(lo), float(hi) if hi > lo else float(lo) + 1.0


def render_overlay(path, labelmap, affine, legend, image, modality, *, dpi: int) -> Path:
    """Write a PNG of three orthogonal slices through the labels' centre; legend = [(value, prompt, voxels)]."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    labels, zooms = _to_ras(labelmap, affine)
    background = _to_ras(image, affine)[0] if image is not None else None
    hits = np.argwhere(labels > 0)
    centre = hits.mean(axis=0).round().astype(int) if hits.size else np.array(labels.shape) // 2
    palette = [c for name in ("tab20", "tab20b", "tab20c") for c in _colors(name)]
    n_values = int(labelmap.max()) + 1
    cmap = ListedColormap([(0, 0, 0, 0)] + [palette[(v - 1) % len(palette)] for v in range(1, n_values)])
    views = [  # (title, slicer, (horizontal mm, vertical mm)); horizontal axes are flipped below so
        # the patient's right is on the left (axial, coronal) and anterior on the left (sagittal)
        ("axial", lambda a: a[:, :, centre[2]], (zooms[0], zooms[1])),
        ("coronal", lambda a: a[:, centre[1], :], (zooms[0], zooms[2])),
        ("sagittal", lambda a: a[centre[0], :, :], (zooms[1], zooms[2])),
    ]
    fig = Figure(figsize=(15, 5.5))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 3)
    lo, hi = _window(background, modality) if background is not None else (0.0, 1.0)
    for ax, (title, cut, (dh, dv)) in zip(axes, views, strict=True):
        lab = cut(labels).T
        extent = (0, lab.shape[1] * dh, 0, lab.shape[0] * dv)
        if background is not None:
            ax.imshow(cut(background).T, cmap="gray", vmin=lo, vmax=hi, origin="lower", extent=extent)
        else:
            ax.imshow(np.zeros_like(lab, dtype=float), cmap="gray", vmin=0, vmax=1, origin="lower", extent=extent)
        ax.imshow(np.ma.masked_equal(lab, 0), cmap=cmap, vmin=0, vmax=n_values - 1, origin="lower",
                  extent=extent, alpha=0.5, interpolation="nearest")
        ax.invert_xaxis()
        ax.set_title(title)
        ax.set_axis_off()
    handles = [Patch(color=palette[(v - 1) % len(palette)], label=f"{v} {p}" + ("" if n else " (empty)"))
               for v, p, n in legend]
    ncol = max(1, -(-len(handles) // 30))
    right = 1.0 - 0.13 * ncol
    fig.subplots_adjust(left=0.01, right=right, top=0.92, bottom=0.02, wspace=0.04)
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(right + 0.005, 0.5), fontsize=7,
               ncol=ncol, frameon=False)
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=dpi, format="png"), suffix=".part.png")
    return path


def _colors(name: str) -> list[tuple[float, float, float, float]]:
    from matplotlib import colormaps

    cmap = colormaps[name]
    return [cmap(i) for i in range(cmap.N)]
