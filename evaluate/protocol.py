"""The evaluation protocol on ../shared/data: specialists, honest splits, evaluation cases, targets.

Paths are relative to ``<shared>/data``; dataset names are the cards in ``datasets/``. Splits
are the cards' (fixed before any training):

- ``validation``: the `test` people of the multi-subject cards (5 BTCV CTs, 4 CHAOS T2 MRs),
  never trained on and never used for a choice: the figures that measure generalisation.
- ``held-out``: subject B (card ``totalseg_upper_abdomen_dicom``), another person, monitored
  during training (its labels are TotalSegmentator predictions).
- ``train``: subject A (card ``totalseg_abdomen``) and the TotalSegmentator MR: trained on;
  their numbers measure fitting, never generalisation.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]

# the structures each dataset's headline mean is taken over
TARGETS: dict[str, tuple[str, ...]] = {
    "btcv_abdomen_24": ("spleen", "kidney_right", "kidney_left", "gallbladder", "liver", "stomach", "aorta",
                        "pancreas"),
    "chaos_t2_16": ("liver", "kidney_right", "kidney_left", "spleen"),
    "totalseg_upper_abdomen_dicom": ("liver", "spleen", "stomach", "aorta", "inferior_vena_cava", "vertebrae_t11",
                                     "vertebrae_t12", "spinal_cord"),
    "totalseg_abdomen": ("liver", "spleen", "stomach", "aorta", "inferior_vena_cava", "vertebrae_t11",
                         "vertebrae_t12", "spinal_cord"),
}
MULTI_SUBJECT = ("btcv_abdomen_24", "chaos_t2_16")


def shared_root() -> Path:
    """The shared folder beside the project (``<project>/../shared``)."""
    return PROJECT.parent / "shared"


def card(dataset: str) -> Path:
    """The dataset card of ``dataset``."""
    return PROJECT / "datasets" / f"{dataset}.yaml"


@cache
def card_cases(dataset: str, split: str) -> tuple[tuple[str, str, str], ...]:
    """(case id, image, label) of one split of a multi-subject card, paths relative to ``<shared>/data``."""
    from sat.data.cards import load_card

    c = load_card(card(dataset))
    folder = c.root.removeprefix("data/")
    return tuple((e.id, f"{folder}/{e.image}", f"{folder}/{e.labels[0].file}") for e in c.cases if e.split == split)


def _specialist(dataset: str, modality: str, labels: str) -> dict:
    train = [(img, lab) for _, img, lab in card_cases(dataset, "train")]
    return {"modality": modality, "labels": labels, "spacing": (2.0, 2.0, 3.0), "train": train}


# specialist name (= the card of its training data) -> training recipe
SPECIALISTS: dict[str, dict] = {
    "totalseg_abdomen": {
        "modality": "ct",
        "task": "total",
        "spacing": (3.0, 3.0, 3.0),
        "train": [
            ("ct/totalseg_abdomen/example_ct.nii.gz", "ct/totalseg_abdomen/example_seg_fast_force_split.nii.gz"),
            ("ct/totalseg_abdomen/example_ct_sm.nii.gz", "ct/totalseg_abdomen/example_seg.nii.gz"),
        ],
    },
    "totalseg_abdomen_mr": {
        "modality": "mr",
        "task": "total_mr",
        "spacing": (3.0, 3.0, 3.0),
        "train": [("mr/totalseg_abdomen_mr/example_mr_sm.nii.gz", "mr/totalseg_abdomen_mr/example_seg_mr.nii.gz")],
    },
    # the same training people as SAT (cards' `train` split), SAT's model spacing
    "btcv_abdomen_24": _specialist("btcv_abdomen_24", "ct", "ct/btcv_abdomen/labels.json"),
    "chaos_t2_16": _specialist("chaos_t2_16", "mr", "mr/chaos_t2/labels.json"),
}

# evaluation cases: dataset card, case id, image, reference label map, split, specialist to compare with
CASES: list[dict] = [
    *({"dataset": name, "case": case, "split": "validation", "image": image, "label": label, "specialist": name}
      for name in MULTI_SUBJECT for case, image, label in card_cases(name, "test")),
    {"dataset": "totalseg_upper_abdomen_dicom", "case": "subject_b", "split": "held-out",
     "image": "ct/totalseg_upper_abdomen_dicom/dicom", "label": "ct/totalseg_upper_abdomen_dicom/example_seg_dicom.nii.gz",
     "specialist": "totalseg_abdomen"},
    {"dataset": "totalseg_abdomen", "case": "subject_a", "split": "train",
     "image": "ct/totalseg_abdomen/example_ct.nii.gz", "label": "ct/totalseg_abdomen/example_seg_fast_force_split.nii.gz",
     "specialist": "totalseg_abdomen"},
    {"dataset": "totalseg_abdomen_mr", "case": "mr_abdomen", "split": "train",
     "image": "mr/totalseg_abdomen_mr/example_mr_sm.nii.gz", "label": "mr/totalseg_abdomen_mr/example_seg_mr.nii.gz",
     "specialist": "totalseg_abdomen_mr"},
]


def class_names(data: Path, spec: dict) -> dict[int, str]:
    """Label value -> name of a specialist's classes (TotalSegmentator ``task`` or a ``labels`` JSON file)."""
    if "task" in spec:
        table = json.loads((data / "ct" / "totalsegmentator_class_map.json").read_text())[spec["task"]]
    else:
        table = json.loads((data / spec["labels"]).read_text())
    return {int(k): v for k, v in table.items()}
