"""The cards of the real volumes in ../shared/data: cases, splits and label names match the files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sat.data.cards import load_cards
from sat.data.converters import find_cases, load_case

DATASETS = Path(__file__).resolve().parents[2] / "datasets"
EXPECTED = {
    "totalseg_abdomen": {"subject_a": "train", "subject_a_crop30": "train"},
    "totalseg_upper_abdomen_dicom": {"subject_b": "val"},
    "totalseg_abdomen_mr": {"mr_abdomen": "train"},
    "dcmqi_3slice": {"subject_c": "train"},
    "brain_freesurfer": {"brain_freesurfer": "train"},
    "brain_mni152": {"mni152_2009": "train"},
    "spine_sct": {"t1": "train", "t2": "train", "mt1": "train", "t2s": "train", "t2_fake_lesion": "train"},
    "brain_flair_lesion": {"flair": "train"},
    "tumor_rois_brain": {"brain1": "train", "brain2": "train"},
    "tumor_rois_breast": {"breast1": "train"},
    "spine_crop_tptbox": {"tptbox_spine": "train"},
    # the multi-subject sets: validation people (`test`) and development people (`val`) fixed in the cards
    "btcv_abdomen_24": {f"btcv_{i}": ("test" if i in {"03", "13", "20", "27", "29"} else
                                      "val" if i in {"09", "21"} else "train")
                        for i in ("00", "01", "02", "03", "04", "06", "08", "09", "11", "12", "13", "14", "15",
                                  "16", "17", "18", "20", "21", "23", "25", "26", "27", "28", "29")},
    "chaos_t2_16": {f"chaos_{i}": ("test" if i in {"21", "22", "36", "37"} else "val" if i in {"20", "33"} else "train")
                    for i in ("01", "02", "03", "08", "10", "15", "19", "20", "21", "22", "32", "33", "36", "37",
                              "38", "39")},
}


@pytest.fixture(scope="module")
def local_cards():
    return {c.name: c for c in load_cards([DATASETS]) if c.root is not None}


@pytest.mark.realdata
def test_every_shared_dataset_has_a_card_with_fixed_splits(shared_data, local_cards):
    assert set(local_cards) == set(EXPECTED)
    for name, card in local_cards.items():
        cases = find_cases(card, card.resolve_root(shared=shared_data.parent))
        assert {c.case: card.split_of(c.case, c.split) for c in cases} == EXPECTED[name], name


@pytest.mark.realdata
def test_totalsegmentator_cards_use_the_shipped_class_names(shared_data, local_cards):
    class_map = json.loads((shared_data / "ct" / "totalsegmentator_class_map.json").read_text())
    for name, task in (("totalseg_abdomen", "total"), ("totalseg_upper_abdomen_dicom", "total"),
                       ("totalseg_abdomen_mr", "total_mr")):
        labels = local_cards[name].labels
        assert {v: s.name for v, s in labels.items()} == {int(k): n for k, n in class_map[task].items()}


@pytest.mark.realdata
def test_flipped_dicom_label_lands_on_the_organs(shared_data, local_cards):
    card = local_cards["totalseg_upper_abdomen_dicom"]
    (case,) = find_cases(card, card.resolve_root(shared=shared_data.parent))
    image, label = load_case(case, modality="ct", known=card.labels)
    liver = image.array[label == 5]
    assert liver.size > 10000 and 40 < float(np.median(liver)) < 200  # enhanced liver parenchyma, HU
    spine = image.array[(label >= 26) & (label <= 50)]
    assert float(np.median(spine)) > 150  # bone


@pytest.mark.realdata
def test_multi_subject_labels_match_the_shipped_label_names(shared_data, local_cards):
    for name, folder in (("btcv_abdomen_24", "ct/btcv_abdomen"), ("chaos_t2_16", "mr/chaos_t2")):
        names = json.loads((shared_data / folder / "labels.json").read_text())
        assert {v: s.name for v, s in local_cards[name].labels.items()} == {int(k): n for k, n in names.items()}


@pytest.mark.realdata
def test_btcv_is_stored_in_the_abdominal_window(shared_data, local_cards):
    card = local_cards["btcv_abdomen_24"]
    case = find_cases(card, card.resolve_root(shared=shared_data.parent))[0]
    image, _ = load_case(case, modality="ct", known=card.labels)
    assert image.array.min() >= -126 and image.array.max() <= 276  # why models clip CT to ABDOMEN_WINDOW
