"""Accuracy against input thickness: the measurement behind ``sat.model.inference.check_coverage``.

The real CT ``example_ct.nii.gz`` (3 mm) is re-sliced to 1 mm along z (linear; its reference
labels nearest) and cut into slabs of N slices centred on the liver. Each slab is segmented
(liver, spleen) with the coverage check bypassed, so the rows below the threshold show what
``sat.segment`` now refuses; the last column says what it does with that slab.

    python benchmarks/thin_inputs.py [--shared ../shared] [--model sat-tiny]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SLICES = (2, 3, 4, 5, 6, 8, 12, 18, 24, 48)
LIVER, SPLEEN = 5, 1  # TotalSegmentator task "total"


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum() + b.sum())
    return 2.0 * int((a & b).sum()) / total if total else float("nan")


def measure(shared: Path, model: str) -> list[dict]:
    from scipy import ndimage

    import sat
    from sat.errors import InputError
    from sat.model.inference import check_coverage
    from sat.preprocess import plan

    folder = shared / "data/ct/totalseg_abdomen"
    image = sat.io.load(folder / "example_ct.nii.gz")
    label = sat.io.load_label(folder / "example_seg_fast_force_split.nii.gz").array
    factor = float(np.linalg.norm(image.affine[:3, 2]))  # mm per slice -> 1 mm slices
    ct, ref = ndimage.zoom(image.array, (1, 1, factor), order=1), ndimage.zoom(label, (1, 1, factor), order=0)
    affine = image.affine.copy()
    affine[:3, 2] /= factor
    segmenter = sat.load_model(model, device="cpu")
    segmenter._input_warnings = lambda volume: []  # measure what the check would refuse
    middle = int(np.flatnonzero((ref == LIVER).any(axis=(0, 1))).mean())
    rows = []
    for n in (*SLICES, ct.shape[2]):
        start = max(0, middle - n // 2) if n < ct.shape[2] else 0
        box = np.s_[:, :, start:start + n]
        shifted = affine.copy()
        shifted[:3, 3] = affine[:3, :3] @ [0, 0, start] + affine[:3, 3]
        slab = sat.io.Volume(np.ascontiguousarray(ct[box]), shifted, modality="ct")
        seg = segmenter.segment(slab, ["liver", "spleen"])
        try:
            verdict = "warning" if check_coverage(plan(slab, spacing=segmenter.spacing),
                                                  segmenter.model.config.patch_size) else "ok"
        except InputError:
            verdict = "refused"
        rows.append({"slices (1 mm)": n, "model voxels": plan(slab, spacing=segmenter.spacing).resampled_shape[2],
                     "liver Dice": round(_dice(seg["liver"], ref[box] == LIVER), 3),
                     "spleen Dice": round(_dice(seg["spleen"], ref[box] == SPLEEN), 3), "sat.segment": verdict})
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--model", default="sat-tiny")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    rows = measure(args.shared, args.model)
    import pandas as pd

    from sat.evaluation.report import to_markdown

    print(to_markdown(pd.DataFrame(rows)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
