"""evaluate(): file matching, missing predictions, grids, mappings of other tools."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import box, write_label

from sat.errors import ConfigError, InputError, UnknownTermError
from sat.evaluation.evaluator import COLUMNS, evaluate
from sat.evaluation.labels import read_mapping

SHAPE = (20, 16, 10)
LABELS = {"1": "liver", "2": "spleen", "3": "left kidney"}


def _gt() -> np.ndarray:
    gt = np.zeros(SHAPE, np.uint8)
    gt[box(SHAPE, (2, 2, 2), (10, 10, 8))] = 1
    gt[box(SHAPE, (12, 4, 2), (18, 12, 8))] = 2
    return gt  # label 3 absent: "both empty" when not predicted


@pytest.fixture
def folders(tmp_path, fake_tree):
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    write_label(gt / "case1.nii.gz", _gt())
    write_label(gt / "case2.nii.gz", _gt())
    write_label(pred / "case1.nii.gz", _gt())  # perfect
    write_label(pred / "other.nii.gz", _gt())  # no reference: ignored, reported
    return gt, pred


def test_missing_prediction_scored_empty_and_reported(folders):
    gt, pred = folders
    df = evaluate(pred, gt, labels=LABELS, method="m", dataset="d", skip_absent=False)
    assert list(df.columns) == COLUMNS and len(df) == 6
    assert df.attrs["missing_cases"] == ["case2"] and df.attrs["extra_cases"] == ["other"]
    c1, c2 = df[df.case == "case1"].set_index("concept"), df[df.case == "case2"].set_index("concept")
    assert (c1.status == "ok").all() and (c1.dice == 1.0).all() and (c1.nsd == 1.0).all()
    assert (c2.status == "missing").all()
    assert c2.loc["liver", "dice"] == 0.0 and c2.loc["spleen", "nsd"] == 0.0
    assert c2.loc["kidney_left", "dice"] == 1.0  # absent in reference, nothing predicted
    assert c1.loc["kidney_left", "region"] == "abdomen" and c1.loc["liver", "kind"] == "organ"
    assert set(df.method) == {"m"} and set(df.dataset) == {"d"}
    # default: (case, class) pairs empty on both sides are left out instead of scoring 1
    df = evaluate(pred, gt, labels=LABELS)
    assert len(df) == 4 and "kidney_left" not in set(df.concept)


def test_false_positive_on_absent_class_is_kept(tmp_path, fake_tree):
    gt = _gt()
    pred = gt.copy()
    pred[0, 0, 0] = 3  # left kidney predicted where the reference has none
    write_label(tmp_path / "gt" / "c.nii.gz", gt)
    write_label(tmp_path / "pred" / "c.nii.gz", pred)
    d = evaluate(tmp_path / "pred", tmp_path / "gt", labels=LABELS).set_index("concept")
    assert d.loc["kidney_left", "dice"] == 0.0 and d.loc["kidney_left", "gt_voxels"] == 0


def test_prediction_on_flipped_grid_is_matched_in_physical_space(tmp_path, fake_tree):
    gt = _gt()
    affine = np.diag([1.0, 1.5, 2.0, 1.0])
    flipped = affine.copy()
    flipped[1, 1], flipped[1, 3] = -1.5, 1.5 * (SHAPE[1] - 1)  # y axis stored reversed, same world positions
    write_label(tmp_path / "gt" / "c.nii.gz", gt, affine)
    write_label(tmp_path / "pred" / "c.nii.gz", gt[:, ::-1, :], flipped)
    df = evaluate(tmp_path / "pred", tmp_path / "gt", labels=LABELS)
    assert (df.dice == 1.0).all()


def test_other_tool_mapping_and_sat_folder(tmp_path, fake_tree):
    gt = _gt()
    write_label(tmp_path / "gt" / "c.nii.gz", gt)
    other = np.zeros_like(gt)
    other[gt == 1], other[gt == 2] = 7, 9  # another tool numbers its classes differently
    write_label(tmp_path / "tool" / "c.nii.gz", other)
    df = evaluate(tmp_path / "tool", tmp_path / "gt", labels=LABELS, pred_labels={7: "Liver", 9: "spleen"})
    d = df.set_index("concept")
    assert d.loc["liver", "dice"] == 1.0 and d.loc["spleen", "dice"] == 1.0
    assert "kidney_left" not in d.index  # neither labelled nor predicted
    d = evaluate(tmp_path / "tool", tmp_path / "gt", labels=LABELS, pred_labels={7: "Liver"}).set_index("concept")
    assert d.loc["spleen", "status"] == "not_predicted" and d.loc["spleen", "dice"] == 0.0
    # sat segment output: <case>/labelmap.nii.gz + labels.json (its own mapping wins)
    write_label(tmp_path / "sat" / "c" / "labelmap.nii.gz", other)
    (tmp_path / "sat" / "c" / "labels.json").write_text(json.dumps({"7": {"prompt": "liver", "concept": "liver"}}))
    d = evaluate(tmp_path / "sat", tmp_path / "gt", labels=LABELS).set_index("concept")
    assert d.loc["liver", "dice"] == 1.0 and d.loc["spleen", "status"] == "not_predicted"
    # one binary mask per class (TotalSegmentator without --ml)
    write_label(tmp_path / "masks" / "c" / "spleen.nii.gz", gt == 2)
    d = evaluate(tmp_path / "masks", tmp_path / "gt", labels=LABELS, classes=["spleen"]).set_index("concept")
    assert list(d.index) == ["spleen"] and d.loc["spleen", "dice"] == 1.0


def test_partial_overlap_and_class_tolerance(tmp_path, fake_tree):
    gt = _gt()
    pred = np.roll(gt, 1, axis=2)  # 2 mm shift along z
    write_label(tmp_path / "gt" / "c.nii.gz", gt)
    write_label(tmp_path / "pred" / "c.nii.gz", pred)
    df = evaluate(tmp_path / "pred", tmp_path / "gt", labels=LABELS, class_tolerance_mm={"spleen": 2.0}, hd95=True)
    d = df.set_index("concept")
    assert 0.7 < d.loc["liver", "dice"] < 1.0 and d.loc["liver", "nsd"] < 1.0
    assert d.loc["spleen", "nsd"] == 1.0 and d.loc["spleen", "tolerance_mm"] == 2.0
    assert d.loc["liver", "hd95"] == pytest.approx(2.0)


def test_errors(tmp_path, fake_tree):
    write_label(tmp_path / "gt" / "c.nii.gz", _gt())
    with pytest.raises(UnknownTermError, match="'pancreas'"):
        evaluate(tmp_path / "gt", tmp_path / "gt", labels={"1": "pancreas"})
    with pytest.raises(InputError, match="not a directory"):
        evaluate(tmp_path / "nope", tmp_path / "gt", labels=LABELS)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no reference"):
        evaluate(tmp_path / "gt", tmp_path / "empty", labels=LABELS)
    with pytest.raises(InputError, match="not labelled"):
        evaluate(tmp_path / "gt", tmp_path / "gt", labels=LABELS, classes=["heart"])
    far = np.eye(4)
    far[:3, 3] = 1000.0
    write_label(tmp_path / "far" / "c.nii.gz", _gt(), far)
    with pytest.raises(InputError, match="do not overlap"):
        evaluate(tmp_path / "far", tmp_path / "gt", labels=LABELS)


def test_read_mapping_forms(tmp_path):
    assert read_mapping({"0": "background", "1": "liver"}) == {1: "liver"}
    assert read_mapping({"labels": {"background": 0, "liver": 1}}) == {1: "liver"}  # nnU-Net dataset.json
    assert read_mapping([{"value": 2, "name": "spleen"}]) == {2: "spleen"}
    (tmp_path / "m.json").write_text(json.dumps({"total": {"1": "spleen"}, "total_mr": {"1": "liver"}}))
    assert read_mapping(f"{tmp_path / 'm.json'}:total_mr") == {1: "liver"}
    with pytest.raises(ConfigError, match="FILE:KEY"):
        read_mapping(tmp_path / "m.json")
    with pytest.raises(ConfigError, match="no key"):
        read_mapping(f"{tmp_path / 'm.json'}:nope")
    with pytest.raises(InputError, match="not found"):
        read_mapping(tmp_path / "missing.json")
    with pytest.raises(ConfigError, match="no foreground"):
        read_mapping({"0": "background"})


@pytest.mark.realdata
@pytest.mark.slow
def test_real_reference_on_the_dicom_grid_scores_perfectly(shared_data, tmp_path):
    """Subject B: the reference NIfTI is stored flipped relative to the DICOM series."""
    from pathlib import Path

    from sat import io
    from sat.preprocess import resample_to

    folder = shared_data / "ct" / "totalseg_upper_abdomen_dicom"
    ref = io.load_label(folder / "example_seg_dicom.nii.gz")
    dicom = io.load(folder / "dicom")
    moved = resample_to(ref, dicom)
    assert not np.allclose(moved.affine, ref.affine)
    io.save(moved.array.astype(np.int16), tmp_path / "pred" / "subject_b.nii.gz", affine=moved.affine)
    card = Path(__file__).resolve().parents[2] / "datasets" / "totalseg_upper_abdomen_dicom.yaml"
    df = evaluate(tmp_path / "pred", {"subject_b": folder / "example_seg_dicom.nii.gz"}, labels=card)
    assert len(df) == len(np.unique(ref.array)) - 1 == 31
    assert (df.dice == 1.0).all() and (df.nsd == 1.0).all() and (df.status == "ok").all()
