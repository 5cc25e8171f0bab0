"""Writers of tiny synthetic datasets laid out exactly like the real public datasets."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np

SHAPE = (8, 7, 6)
AFFINE = np.diag([2.0, 2.0, 2.5, 1.0])


def image(seed: int = 0, shape=SHAPE) -> np.ndarray:
    """A random CT-like int16 volume (air outside, soft tissue inside)."""
    rng = np.random.default_rng(seed)
    arr = np.full(shape, -1000, np.int16)
    arr[1:-1, 1:-1, 1:-1] = rng.integers(-100, 200, size=[s - 2 for s in shape])
    return arr


def label(values=(1, 2), shape=SHAPE) -> np.ndarray:
    """Label map with one block per value along the first axis."""
    arr = np.zeros(shape, np.uint8)
    for i, v in enumerate(values):
        arr[1 + 2 * i : 3 + 2 * i, 2:5, 1:4] = v
    return arr


def nifti(path: Path, array: np.ndarray, affine: np.ndarray = AFFINE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".mgz":
        nib.save(nib.MGHImage(array.astype(np.int32 if array.dtype.kind in "iu" else np.float32), affine), path)
    else:
        nib.save(nib.Nifti1Image(array, affine), path)
    return path


def pair(img_path: Path, lab_path: Path, values=(1, 2), seed: int = 0) -> None:
    nifti(img_path, image(seed))
    nifti(lab_path, label(values))


def card(name: str, layout: str, labels: dict, **extra) -> dict:
    """A valid card mapping."""
    return {"name": name, "modality": extra.pop("modality", "ct"), "region": extra.pop("region", "abdomen"),
            "license": "CC-BY-4.0", "source": "https://example.org", "citation": "Someone et al. 2024",
            "layout": layout, "labels": labels, **extra}


def write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
