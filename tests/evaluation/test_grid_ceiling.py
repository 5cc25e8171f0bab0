"""evaluate/grid_ceiling.py: the Dice a perfect mask keeps through a coarser model grid."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def _module():
    spec = importlib.util.spec_from_file_location("grid_ceiling", ROOT / "evaluate" / "grid_ceiling.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_large_structures_survive_a_coarse_grid_and_thin_ones_do_not():
    m = _module()
    labels = np.zeros((120, 120, 40), np.int16)
    labels[20:90, 20:90, 5:35] = 1  # 56 x 56 x 30 mm block at 0.8 x 0.8 x 1 mm
    labels[100:104, 40:44, 10:14] = 2  # 3.2 x 3.2 x 4 mm: about one 3 mm voxel
    affine = np.diag([0.8, 0.8, 1.0, 1.0])
    big, small = (m.grid_ceiling(*m.cropped(labels == v, affine), (3.0, 3.0, 3.0)) for v in (1, 2))
    assert big > 0.95
    assert small < 0.8
    assert m.grid_ceiling(*m.cropped(labels == 1, affine), (0.8, 0.8, 1.0)) == 1.0  # no change of grid, no loss
    mask, box = m.cropped(labels == 2, affine)
    assert mask.shape == (20, 20, 20) and np.allclose(box[:3, 3], [92 * 0.8, 32 * 0.8, 2.0])  # the cut keeps world places
