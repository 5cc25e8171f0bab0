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
    labels = np.zeros((120, 120, 40), np.int16)
    labels[20:90, 20:90, 5:35] = 1  # 56 x 56 x 30 mm block at 0.8 x 0.8 x 1 mm
    labels[100:104, 40:44, 10:14] = 2  # 3.2 x 3.2 x 4 mm: about one 3 mm voxel
    big, small = _module().round_trip_dice(labels, [1, 2], (0.8, 0.8, 1.0), (3.0, 3.0, 3.0))
    assert big > 0.95
    assert small < 0.8
    same, _ = _module().round_trip_dice(labels, [1, 2], (0.8, 0.8, 1.0), (0.8, 0.8, 1.0))
    assert same == 1.0  # no change of grid, no loss
