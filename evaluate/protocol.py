"""The evaluation protocol on ../shared/data: datasets, honest splits, label maps (single source).

Paths are relative to ``<shared>/data``. Subject A (ct/totalseg_abdomen) trains; subject B
(ct/totalseg_upper_abdomen_dicom) is held out. The MR dataset has one case only: it is used
for training and its scores are labelled ``training`` (not held out).
"""

from __future__ import annotations

import json
from pathlib import Path

DATASETS: dict[str, dict] = {
    "totalseg_ct": {
        "modality": "ct",
        "task": "total",
        "spacing": (3.0, 3.0, 3.0),
        "train": [
            ("ct/totalseg_abdomen/example_ct.nii.gz", "ct/totalseg_abdomen/example_seg_fast_force_split.nii.gz"),
            ("ct/totalseg_abdomen/example_ct_sm.nii.gz", "ct/totalseg_abdomen/example_seg.nii.gz"),
        ],
        # case id -> (image, reference label map, split)
        "eval": {
            "subject_b": ("ct/totalseg_upper_abdomen_dicom/dicom", "ct/totalseg_upper_abdomen_dicom/example_seg_dicom.nii.gz", "test"),
            "subject_a": ("ct/totalseg_abdomen/example_ct.nii.gz", "ct/totalseg_abdomen/example_seg_fast_force_split.nii.gz", "train"),
        },
    },
    "totalseg_mr": {
        "modality": "mr",
        "task": "total_mr",
        "spacing": (3.0, 3.0, 3.0),
        "train": [("mr/totalseg_abdomen_mr/example_mr_sm.nii.gz", "mr/totalseg_abdomen_mr/example_seg_mr.nii.gz")],
        "eval": {
            "mr_case": ("mr/totalseg_abdomen_mr/example_mr_sm.nii.gz", "mr/totalseg_abdomen_mr/example_seg_mr.nii.gz", "train"),
        },
    },
}


def shared_root() -> Path:
    """The shared folder beside the project (``<project>/../shared``)."""
    return Path(__file__).resolve().parents[1].parent / "shared"


def class_names(data: Path, task: str) -> dict[int, str]:
    """TotalSegmentator label value -> name for ``task`` (``total`` or ``total_mr``)."""
    table = json.loads((data / "ct" / "totalsegmentator_class_map.json").read_text())[task]
    return {int(k): v for k, v in table.items()}
