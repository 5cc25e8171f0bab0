"""What a model space allows: Dice of each reference mask after a round trip through a coarser grid.

A network that works on a 3 mm grid can at best output, per model voxel, the fraction of it
the structure fills; inference interpolates its output back to the scan and thresholds it at
one half. This script does exactly that to the reference masks of the training people (area
average onto the model grid, trilinear back, > 0.5) and reports the Dice against the original
mask: the ceiling the grid puts on each organ, whatever the network. Only ``train`` people are
read (never the validation people).

    python evaluate/grid_ceiling.py                   # BTCV, 3 mm and 2 x 2 x 3 mm
    python evaluate/grid_ceiling.py --grid 1.5,1.5,1.5 --card datasets/chaos_t2_16.yaml
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sat.data.cards import load_card  # noqa: E402
from sat.evaluation.report import to_markdown  # noqa: E402


def round_trip_dice(labels: np.ndarray, values: list[int], spacing: tuple[float, ...],
                    grid: tuple[float, ...]) -> list[float]:
    """Dice of each label value's mask in ``labels`` [X, Y, Z] against itself after the grid round trip
    (computed over the labelled region's bounding box and a margin)."""
    box = tuple(slice(max(0, i.min() - 8), i.max() + 9) for i in np.nonzero(labels))
    crop = torch.from_numpy(labels[box])
    masks = torch.stack([crop == v for v in values])[None].float()  # [1, L, x, y, z]
    coarse_shape = [max(1, round(n * s / g)) for n, s, g in zip(crop.shape, spacing, grid, strict=True)]
    coarse = F.interpolate(masks, size=coarse_shape, mode="area")
    back = F.interpolate(coarse, size=tuple(crop.shape), mode="trilinear", align_corners=False)[0] > 0.5
    ref = masks[0].bool()
    inter, total = (back & ref).flatten(1).sum(1), back.flatten(1).sum(1) + ref.flatten(1).sum(1)
    return (2 * inter / total.clamp_min(1)).tolist()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--card", type=Path, default=ROOT / "datasets" / "btcv_abdomen_24.yaml")
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--grid", action="append", help="model spacing in mm, x,y,z (repeatable)")
    parser.add_argument("--out", type=Path, default=ROOT / "evaluate" / "grid_ceiling.md")
    args = parser.parse_args(argv)
    grids = [tuple(float(v) for v in g.split(",")) for g in args.grid or ["3,3,3", "2,2,3"]]
    card = load_card(args.card)
    root = args.shared / card.root
    rows = []
    for case in card.cases:
        if case.split not in (None, "train"):
            continue
        img = nib.load(root / case.labels[0].file)
        labels = np.asarray(img.dataobj).astype(np.int16)
        spacing = tuple(float(z) for z in img.header.get_zooms()[:3])
        present = [v for v in card.labels if (labels == v).any()]
        for grid in grids:
            name = "x".join(f"{g:g}" for g in grid)
            for value, dice in zip(present, round_trip_dice(labels, present, spacing, grid), strict=True):
                rows.append({"case": case.id, "concept": card.labels[value].concept, "grid": name, "dice": dice})
    if not rows:
        raise SystemExit(f"{args.card}: no training cases with label files; give a card of layout 'files'")
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
