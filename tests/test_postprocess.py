"""Connected-component clean-up (sat.postprocess) and its use by the segmenter."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch

from sat import postprocess
from sat.preprocess.ongrid import _threshold_and_label


def _two_blobs(shape=(12, 10, 8)) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[1:5, 1:5, 1:5] = True  # 64 voxels
    mask[8:10, 7:9, 5:7] = True  # 8 voxels, apart
    return mask


def test_largest_component_keeps_the_biggest_piece_with_26_connectivity():
    mask = _two_blobs()
    kept = postprocess.largest_component(mask)
    assert kept.sum() == 64 and kept[2, 2, 2] and not kept[9, 8, 6]
    diagonal = np.zeros((4, 4, 4), bool)
    diagonal[0, 0, 0] = diagonal[1, 1, 1] = diagonal[2, 2, 2] = True  # corner-touching voxels are one piece
    assert postprocess.components(diagonal) == 1
    np.testing.assert_array_equal(postprocess.largest_component(diagonal), diagonal)
    assert not postprocess.largest_component(np.zeros((3, 3, 3), bool)).any()


def _vertebra(shape=(12, 12, 20)) -> np.ndarray:
    """A body and a spinous process joined only by a bridge in slices 8-9: thin slabs split it."""
    mask = np.zeros(shape, bool)
    mask[2:6, 2:6, 4:16] = True  # body
    mask[7:10, 2:6, 0:10] = True  # process, lower
    mask[6, 2:6, 8:10] = True  # bridge
    return mask


def test_min_slices_finds_the_input_depth_from_which_a_structure_stays_one_piece():
    tube = np.zeros((8, 8, 30), bool)
    tube[3:5, 3:5, :] = True
    assert postprocess.min_slices(tube, 16) == 1  # every slab of a straight tube is one piece
    vertebra = _vertebra()
    assert postprocess.components(vertebra[:, :, 0:8]) == 2  # a slab below the bridge splits it
    assert postprocess.min_slices(vertebra, 16) == 17  # end pieces below the bridge split it at any depth
    assert postprocess.min_slices(_two_blobs(), 16) is None  # not one piece at all
    assert postprocess.min_slices(np.zeros((4, 4, 4), bool), 16) is None


def test_postprocess_config_takes_the_strictest_case():
    one = np.zeros((12, 12, 20), np.uint16)
    one[10:12, 10:12, :] = 1  # liver: a tube
    two = one.copy()
    two[_vertebra()] = 2  # spleen: split by thin slabs
    split = one.copy()
    split[_two_blobs((12, 12, 20))] = 3  # aorta in two pieces in one case
    cases = [SimpleNamespace(label=one, values={"liver": (1,), "spleen": (2,), "aorta": (3,)}),  # absent ones ignored
             SimpleNamespace(label=two, values={"liver": (1,), "spleen": (2,)}),
             SimpleNamespace(label=split, values={"liver": (1,), "aorta": (3,)})]
    rule = postprocess.postprocess_config(cases, ["liver", "spleen", "aorta"], window=16)
    assert rule == {"largest_component": {"liver": 1, "spleen": 17}}
    assert postprocess.postprocess_config(cases, ["spleen"], window=16) == {"largest_component": {"spleen": 17}}
    assert postprocess.applies(rule, "liver", 3) and not postprocess.applies(rule, "spleen", 16)
    assert postprocess.applies(rule, "spleen", 17) and not postprocess.applies(rule, "aorta", 100)
    assert not postprocess.applies(None, "liver", 50) and not postprocess.applies(rule, None, 50)


def test_dropped_voxels_go_to_the_next_prompt_above_the_threshold():
    blobs = _two_blobs()
    first = torch.where(torch.from_numpy(blobs), 5.0, -5.0)
    second = torch.where(torch.from_numpy(blobs), 2.0, -5.0)  # less probable, same voxels
    masks, labels = _threshold_and_label([first, second], 0.5, [True, False])
    assert masks[0].sum() == 64 and masks[1].sum() == 72
    assert (labels[1:5, 1:5, 1:5] == 1).all() and (labels[8:10, 7:9, 5:7] == 2).all()
    masks, labels = _threshold_and_label([first, second], 0.5)
    assert masks[0].sum() == 72 and (labels[blobs] == 1).all()
