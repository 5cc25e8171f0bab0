"""Connected-component clean-up (sat.postprocess) and its use by the segmenter."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch

from sat import postprocess
from sat._ongrid import _threshold_and_label


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


def test_single_component_concepts_need_one_piece_in_every_case_that_has_them():
    one = np.zeros((12, 10, 8), np.uint16)
    one[1:5, 1:5, 1:5] = 1
    split = one.copy()
    split[_two_blobs() & (one == 0)] = 1  # concept 1 in two pieces
    split[6:8, 1:3, 1:3] = 2
    cases = [SimpleNamespace(label=one, values={"liver": (1,), "spleen": (2,)}),  # spleen labelled, absent
             SimpleNamespace(label=split, values={"liver": (1,), "spleen": (2,), "aorta": (3,)})]
    assert postprocess.single_component_concepts(cases) == ["spleen"]
    assert postprocess.single_component_concepts(cases[:1]) == ["liver"]
    assert postprocess.single_component_concepts(cases[:1], ["spleen"]) == []
    assert postprocess.postprocess_config(cases, ["liver", "spleen"]) == {"largest_component": ["spleen"]}


def test_dropped_voxels_go_to_the_next_prompt_above_the_threshold():
    blobs = _two_blobs()
    first = torch.where(torch.from_numpy(blobs), 5.0, -5.0)
    second = torch.where(torch.from_numpy(blobs), 2.0, -5.0)  # less probable, same voxels
    masks, labels = _threshold_and_label([first, second], 0.5, [True, False])
    assert masks[0].sum() == 64 and masks[1].sum() == 72
    assert (labels[1:5, 1:5, 1:5] == 1).all() and (labels[8:10, 7:9, 5:7] == 2).all()
    masks, labels = _threshold_and_label([first, second], 0.5)
    assert masks[0].sum() == 72 and (labels[blobs] == 1).all()
