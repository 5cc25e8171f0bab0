"""The nnU-Net-style planner, the DynUNet specialist, its weights files and a tiny training run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from sat.errors import InputError, WeightsError
from sat.evaluation.specialist import (
    SpecialistPlan,
    build_network,
    load_specialist,
    plan_specialist,
    save_specialist,
    target_spacing,
)
from sat.preprocess import CT_SCALE


def test_target_spacing_median_and_anisotropy():
    assert target_spacing([(1, 1, 2), (1, 1, 3), (2, 2, 4)]) == (1.0, 1.0, 3.0)
    # strongly anisotropic: the coarse axis takes its 10th percentile (not below the finer axes)
    sp = target_spacing([(0.8, 0.8, 6.0), (0.8, 0.8, 5.0), (0.8, 0.8, 3.0), (0.7, 0.7, 6.0)])
    assert sp[:2] == (0.8, 0.8) and sp[2] == pytest.approx(np.percentile([6, 5, 3, 6], 10))


def test_plan_isotropic_fits_the_budget():
    plan = plan_specialist([(3.0, 3.0, 3.0)], [(122, 101, 112)], max_patch_voxels=64**3)
    assert np.prod(plan.patch_size) <= 64**3 and plan.median_shape == (122, 101, 112)
    assert len(plan.kernels) == len(plan.strides) == len(plan.filters)
    for axis, size in enumerate(plan.patch_size):  # divisible by 2**poolings, bottleneck >= 4 voxels
        pools = sum(s[axis] == 2 for s in plan.strides)
        assert size % 2**pools == 0 and size // 2**pools >= 4
    assert plan.filters[0] == 16 and max(plan.filters) <= 128


def test_plan_anisotropic_uses_in_plane_kernels_first():
    plan = plan_specialist([(0.8, 0.8, 4.0)] * 2, [(256, 256, 24), (240, 240, 30)], max_patch_voxels=48**3)
    assert plan.spacing == (0.8, 0.8, 4.0)
    assert plan.kernels[0] == (3, 3, 1) and plan.strides[1] == (2, 2, 1)  # z neither convolved nor pooled yet
    assert plan.patch_size[0] > 4 * plan.patch_size[2] // 2  # patch elongated in-plane like the data in mm
    assert plan_specialist([(1, 1, 1)], [(40, 40, 40)], target=(2, 2, 2)).median_shape == (20, 20, 20)
    with pytest.raises(InputError):
        plan_specialist([], [])
    with pytest.raises(InputError, match="poolings"):
        plan_specialist([(1, 1, 1)], [(64, 64, 64)], max_patch_voxels=8**3)


@pytest.mark.slow  # importing monai.networks takes ~1 min on a loaded machine
def test_network_round_trip(tmp_path):
    plan = plan_specialist([(2.0, 2.0, 2.0)], [(32, 32, 32)], max_patch_voxels=16**3)
    plan.labels, plan.values = {0: "background", 1: "liver"}, {0: 0, 1: 5}
    model = build_network(plan).eval()
    x = torch.randn(1, 1, *plan.patch_size)
    out = model(x)
    assert out.shape == (1, 2, *plan.patch_size)
    save_specialist(model, plan, tmp_path / "spec", extra={"steps": 3})
    loaded, plan2, meta = load_specialist(tmp_path / "spec")
    assert plan2 == plan and meta["steps"] == 3 and meta["format_version"] == 1
    torch.testing.assert_close(loaded(x), out, atol=5e-2, rtol=5e-2)  # weights stored as float16
    assert SpecialistPlan.from_dict(json.loads(json.dumps(meta["plan"]))) == plan
    assert plan2.ct_scale == CT_SCALE  # new plans use the fixed CT scale; plans saved before it z-score per scan
    older = {k: v for k, v in json.loads(json.dumps(meta["plan"])).items() if k != "ct_scale"}
    assert SpecialistPlan.from_dict(older).ct_scale is None
    with pytest.raises(WeightsError, match="lacks plan.json"):
        load_specialist(tmp_path / "none")
    with pytest.raises(InputError, match="foreground"):
        build_network(plan, n_classes=1)


@pytest.mark.slow
def test_training_learns_and_predicts_on_the_original_grid(tmp_path):
    from sat.evaluation.metrics import dice
    from sat.evaluation.specialist_train import predict_specialist, train_specialist

    rng = np.random.default_rng(0)
    affine = np.diag([-1.5, 1.5, 2.0, 1.0])  # flipped x: predictions must come back on this grid
    label = np.zeros((40, 36, 24), np.uint8)
    label[6:20, 5:20, 3:15], label[24:34, 10:30, 8:20] = 5, 7
    image = rng.normal(0, 20, label.shape) + np.select([label == 5, label == 7], [200.0, 80.0], -100.0)
    case = ((image.astype(np.float32), affine), (label, affine))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny patches: threading costs more than it brings on a busy machine
    try:
        model, plan, history = train_specialist(
            [case], names={5: "liver", 7: "spleen"}, minutes=10.0, target=(3.0, 3.0, 3.0), modality="ct",
            max_patch_voxels=16**3, max_steps=80, lr=2e-3, checkpoint=tmp_path / "spec",
        )
    finally:
        torch.set_num_threads(threads)
    assert len(history) == 80 and history[-1]["loss"] < 0.5 * history[0]["loss"]
    assert plan.values == {0: 0, 1: 5, 2: 7} and plan.labels[2] == "spleen"
    labelmap, out_affine = predict_specialist(model, plan, case[0])
    assert labelmap.shape == label.shape and np.allclose(out_affine, affine)
    assert dice(labelmap == 5, label == 5) > 0.85 and dice(labelmap == 7, label == 7) > 0.8
    # continue from the checkpoint: same plan, one more step
    assert load_specialist(tmp_path / "spec")[2]["steps"] == 80
    _, plan2, history2 = train_specialist([case], names={5: "liver", 7: "spleen"}, minutes=1.0, modality="ct",
                                          max_steps=1, init=tmp_path / "spec")
    assert plan2.patch_size == plan.patch_size and len(history2) == 1
    with pytest.raises(InputError, match="differ"):
        train_specialist([(case[0], ((label > 0).astype(np.uint8) * 6, affine))], names={6: "x"},
                         minutes=0.1, max_steps=1, init=tmp_path / "spec")
    with pytest.raises(InputError, match="no name"):
        train_specialist([case], names={5: "liver"}, minutes=0.1, max_steps=1)
