"""Writers of synthetic DICOM series with known geometry (SimpleITK's DICOM writer).

Positions and directions are DICOM patient coordinates (LPS, mm). A pixel value is a function
of the world position of the pixel centre, so any reader's result can be checked against the
truth in world space.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk  # noqa: N813

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def tilted(degrees: float) -> tuple[float, ...]:
    """ImageOrientationPatient of a gantry tilted by ``degrees`` about the left-right axis."""
    t = np.radians(degrees)
    return (1.0, 0.0, 0.0, 0.0, float(np.cos(t)), float(np.sin(t)))


def write_series(folder: Path, origins: Sequence[Sequence[float]], values: Callable[[np.ndarray], np.ndarray], *,
                 orientation: Sequence[float] = AXIAL, pixel: tuple[float, float] = (1.0, 1.0),
                 shape: tuple[int, int] = (16, 16), tags: dict[str, str] | None = None,
                 uid: str = "1.2.826.0.1.3680043.2.1125.9") -> Path:
    """One CT slice per origin: ``values(world [X, Y, 3]) -> [X, Y]`` (int16) on the slice's grid.

    ``orientation`` is one IOP for all slices, or ``(N, 6)`` (one per slice); ``pixel`` is the
    spacing along the row and column directions; ``shape`` is (columns, rows) = array [X, Y].
    """
    folder.mkdir(parents=True, exist_ok=True)
    orientations = np.broadcast_to(np.asarray(orientation, dtype=np.float64), (len(origins), 6))
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k, (origin, iop) in enumerate(zip(np.asarray(origins, dtype=np.float64), orientations, strict=True)):
        row, col = iop[:3], iop[3:]
        i, j = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
        world = origin + i[..., None] * pixel[0] * row + j[..., None] * pixel[1] * col
        plane = sitk.GetImageFromArray(np.rint(values(world)).astype(np.int16).T[None])  # [1, rows, columns]
        plane.SetSpacing((pixel[0], pixel[1], 1.0))
        plane.SetOrigin([float(v) for v in origin])
        plane.SetDirection([float(v) for v in np.stack([row, col, np.cross(row, col)], axis=1).ravel()])
        header = {
            "0008|0060": "CT", "0020|000e": uid, "0020|000d": "1.2.3", "0008|103e": "synthetic",
            "0020|0032": "\\".join(f"{v:.6f}" for v in origin), "0020|0037": "\\".join(f"{v:.8f}" for v in iop),
            "0020|0013": str(k + 1), "0008|0018": f"{uid}.{k + 1}", "0028|0030": f"{pixel[1]}\\{pixel[0]}",
            **(tags or {}),
        }
        for key, value in header.items():
            plane.SetMetaData(key, value)
        writer.SetFileName(str(folder / f"slice_{k:03d}.dcm"))
        writer.Execute(plane)
    return folder


def sphere(centre: Sequence[float], radius: float, step: tuple[float, float, float],
           orientation: Sequence[float] = AXIAL) -> Callable[[np.ndarray], np.ndarray]:
    """Pixel values 0..1000: the fraction of each voxel (size ``step`` along row, column, normal)
    inside the ball, from 4x4x4 sub-samples (partial volume, as a scanner sees it)."""
    row, col = np.asarray(orientation[:3]), np.asarray(orientation[3:])
    axes = np.stack([row, col, np.cross(row, col)]) * np.asarray(step)[:, None]
    offsets = (np.arange(4) + 0.5) / 4 - 0.5

    def values(world: np.ndarray) -> np.ndarray:
        inside = np.zeros(world.shape[:-1])
        for a in offsets:
            for b in offsets:
                for c in offsets:
                    point = world + a * axes[0] + b * axes[1] + c * axes[2]
                    inside += np.linalg.norm(point - np.asarray(centre), axis=-1) <= radius
        return inside / 64 * 1000

    return values
