"""The evaluation protocol on ../shared/data: specialists, honest splits, evaluation cases.

Paths are relative to ``<shared>/data``; dataset names are the cards in ``datasets/``.
Subject A (card ``totalseg_abdomen``: the full CT and its 30-slice crop) trains; subject B
(card ``totalseg_upper_abdomen_dicom``, a different patient) is held out. The MR card has a
single case: it trains, and its scores are reported as ``train`` split, never as held out.
"""

from __future__ import annotations

import json
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]

# specialist name (= the card of its training data) -> training recipe
SPECIALISTS: dict[str, dict] = {
    "totalseg_abdomen": {
        "modality": "ct",
        "task": "total",
        "spacing": (3.0, 3.0, 3.0),  # SAT-tiny's model space
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
}

# evaluation cases: dataset card, case id, image, reference label map, split, specialist to compare with
CASES: list[dict] = [
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


def shared_root() -> Path:
    """The shared folder beside the project (``<project>/../shared``)."""
    return PROJECT.parent / "shared"


def card(dataset: str) -> Path:
    """The dataset card of ``dataset``."""
    return PROJECT / "datasets" / f"{dataset}.yaml"


def class_names(data: Path, task: str) -> dict[int, str]:
    """TotalSegmentator label value -> name for ``task`` (``total`` or ``total_mr``)."""
    table = json.loads((data / "ct" / "totalsegmentator_class_map.json").read_text())[task]
    return {int(k): v for k, v in table.items()}
