"""What a model space allows: Dice of each reference mask after a round trip through a coarser grid.

A network that works on a 3 mm grid can at best output, per model voxel, the fraction of it
the structure fills; inference interpolates its output back to the scan and thresholds it at
one half. This script applies that round trip (the pipeline's own resampling,
:func:`sat.evaluation.model_report.grid_ceiling`, on each structure's bounding box and a margin)
to the reference masks of the training people and reports the Dice against the original mask:
the ceiling the grid puts on each organ, whatever the network. Only ``train`` people are read
(never the validation people).

    python evaluate/grid_ceiling.py                   # BTCV, 3 mm and 2 x 2 x 3 mm
    python evaluate/grid_ceiling.py --grid 1.5,1.5,1.5 --card datasets/chaos_t2_16.yaml
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sat.data.cards import load_card  # noqa: E402
from sat.data.converters import find_cases, load_case  # noqa: E402
from sat.evaluation.model_report import grid_ceiling  # noqa: E402
from sat.evaluation.report import to_markdown  # noqa: E402
from sat.postprocess import bounding_box  # noqa: E402

MARGIN = 8  # voxels kept around a structure's bounding box


def cropped(mask: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``mask`` [X, Y, Z] cut to its bounding box and ``MARGIN`` voxels, with the affine of the cut."""
    cut = tuple(slice(max(0, s.start - MARGIN), s.stop + MARGIN) for s in bounding_box(mask))
    box = affine.copy()
    box[:3, 3] = affine[:3, :3] @ np.array([s.start for s in cut], np.float64) + affine[:3, 3]
    return mask[cut], box


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--card", type=Path, default=ROOT / "datasets" / "btcv_abdomen_24.yaml")
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--grid", action="append", help="model spacing in mm, x,y,z (repeatable)")
    parser.add_argument("--out", type=Path, default=ROOT / "evaluate" / "grid_ceiling.md")
    args = parser.parse_args(argv)
    grids = [tuple(float(v) for v in g.split(",")) for g in args.grid or ["3,3,3", "2,2,3"]]
    card = load_card(args.card)
    rows = []
    for source in find_cases(card, card.resolve_root(None, shared=args.shared)):
        if card.split_of(source.case, source.split) != "train":
            continue
        image, label = load_case(source, modality=card.modality)
        for value, spec in card.labels.items():
            if spec.concept and spec.skip is None and np.any(label == value):
                mask, affine = cropped(label == value, image.affine)
                for grid in grids:
                    rows.append({"case": source.case, "concept": spec.concept, "grid": "x".join(f"{g:g}" for g in grid),
                                 "dice": grid_ceiling(mask, affine, grid)})
    if not rows:
        raise SystemExit(f"{args.card}: no labelled training cases under {args.shared}")
    table = pd.DataFrame(rows).pivot_table(index="concept", columns="grid", values="dice", aggfunc="mean")
    people = len({r["case"] for r in rows})
    text = (f"# Grid ceiling: {card.name}\n\n`python evaluate/grid_ceiling.py`: mean over {people} training people "
            f"of the Dice of each reference mask after a round trip through the model grid (mm).\n\n"
            f"{to_markdown(table.reset_index())}\n")
    args.out.write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
