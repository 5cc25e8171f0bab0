"""The card of data fetched from the package registry (``make extra-data``): the TotalSegmentator aorta report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from datafixtures import nifti

from sat.data.cards import load_card
from sat.data.converters import find_cases, load_case

PROJECT = Path(__file__).resolve().parents[2]
CARD = PROJECT / "datasets" / "totalseg_aorta_report.yaml"
FETCHED = PROJECT / "data" / "totalseg_aorta_report"
USED = ("aorta", "vertebrae_T12", "celiac_trunk", "superior_mesenteric_artery", "brachiocephalic_trunk",
        "subclavian_artery_left", "common_carotid_artery_left")
CROP = np.diag([-1.5, -1.5, 1.5, 1.0])  # LPS grid of the cropped CT


def _aorta_report(root: Path, shape=(12, 10, 9)) -> None:
    """The folder as the source distribution lays it out: full CT, crop, one mask per structure on the crop."""
    models = root / "test_result" / "models"
    nifti(root / "example_ct.nii.gz", np.full((14, 12, 9), -1000, np.int16), CROP)
    nifti(models / "ct_cropped.nii.gz", np.full(shape, 40, np.int16), CROP)
    for i, name in enumerate(USED + ("aorta_true_lumen", "iliac_artery_left")):
        mask = np.zeros(shape, np.uint8)
        if name != "iliac_artery_left":  # empty in the real folder
            mask[i % shape[0], :, 1 + i % 7] = 1
        nifti(models / f"{name}.nii.gz", mask, CROP)
    mask = np.zeros(shape, np.uint8)
    mask[..., 0] = 2  # a multi-class task file that the card does not read
    nifti(models / "T716_aorta_true_false_lumen.nii.gz", mask, CROP)


def test_card_reads_one_value_per_used_mask_on_the_crop_grid(tmp_path):
    _aorta_report(tmp_path)
    card = load_card(CARD)
    (case,) = find_cases(card, tmp_path)
    assert card.split_of(case.case, case.split) == "train"
    image, label = load_case(case, modality="ct", known=card.labels)
    assert image.shape == (12, 10, 9)
    value = {s.name: v for v, s in card.labels.items()}
    for i, name in enumerate(USED):
        expected = np.zeros(image.shape, bool)
        expected[i % 12, :, 1 + i % 7] = True
        np.testing.assert_array_equal(label == value[name], expected, err_msg=name)
    assert not np.any(label[..., 0])  # neither the lumen nor the multi-class files are merged
    assert set(card.concept_of().values()) >= {"aorta", "vertebrae_t12"}


@pytest.mark.realdata
def test_fetched_aorta_report_labels_an_enhanced_aorta_and_a_vertebra():
    if not (FETCHED / ".complete").is_file():
        pytest.skip("optional training data absent: run `make extra-data`")
    card = load_card(CARD)
    (case,) = find_cases(card, FETCHED)
    image, label = load_case(case, modality="ct", known=card.labels)
    assert image.shape == (120, 126, 164)
    aorta, t12 = image.array[label == 1], image.array[label == 2]
    assert aorta.size > 70000 and float(np.median(aorta)) > 200  # arterial-phase lumen, HU
    assert t12.size > 9000 and float(np.median(t12)) > 150  # bone
