"""Where the time of ``Segmenter.segment`` goes as the number of prompts grows (one process, warm).

On the real CT ``example_ct.nii.gz`` with the shipped ``sat-tiny``: the median of ``--repeats``
warm calls with 1 and with all 61 TotalSegmentator class names as prompts, split into the
predictor's network windows up to the mask product (``window_parts``), the rest of
``sat.model.predict`` (mask products of the present prompts, gaussian blending and
accumulation of the overlapping windows, the absent windows' sums), the mapping onto the input
grid (threshold, labelmap, voxel counts) and everything else (text, standardization).

    python benchmarks/prompt_scaling.py [--shared ../shared] [--repeats 5] [--model sat-tiny]
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _timed(owner, name: str, sink: list[float]):
    """Wrap ``owner.name`` so every call adds its wall time to ``sink``; returns the original."""
    real = getattr(owner, name)

    def wrapper(*args, **kwargs):
        t = time.perf_counter()
        try:
            return real(*args, **kwargs)
        finally:
            sink.append(time.perf_counter() - t)

    setattr(owner, name, wrapper)
    return real


def measure(shared: Path, repeats: int, model: str = "sat-tiny") -> dict:
    import nibabel as nib
    import numpy as np

    import sat
    import sat.api
    import sat.model
    from sat.model import allocator
    from sat.model.network import SATNet

    logging.disable(logging.WARNING)  # the 30 untrained class names are reported once per call
    names = json.loads((shared / "data/ct/totalsegmentator_class_map.json").read_text())["total"]
    seg_path = shared / "data/ct/totalseg_abdomen/example_seg_fast_force_split.nii.gz"
    values = [int(v) for v in np.unique(np.asarray(nib.load(seg_path).dataobj)) if v > 0]
    prompts = [names[str(v)] for v in values]
    allocator.tune()  # opt-in (sat segment --tune-allocator); the published figures were measured with it
    segmenter = sat.load_model(model, device="cpu")
    volume = sat.io.load(shared / "data/ct/totalseg_abdomen/example_ct.nii.gz")
    segmenter.segment(volume, prompts, on_untrained="text")  # warm-up: text cache, kernels
    results = {}
    for n in (1, len(prompts)):
        rows = []
        for _ in range(repeats):
            sinks = {"network": [], "predict": [], "input_grid": []}
            originals = [(SATNet, "window_parts", _timed(SATNet, "window_parts", sinks["network"])),
                         (sat.model, "predict", _timed(sat.model, "predict", sinks["predict"])),
                         (sat.api, "_to_input_grid", _timed(sat.api, "_to_input_grid", sinks["input_grid"]))]
            t = time.perf_counter()
            segmenter.segment(volume, prompts[:n], on_untrained="text")
            total = time.perf_counter() - t
            for owner, name, real in originals:
                setattr(owner, name, real)
            network, predict, grid = (sum(sinks[k]) for k in ("network", "predict", "input_grid"))
            rows.append({"segment_s": total, "network_s": network, "accumulate_s": predict - network,
                         "input_grid_s": grid, "other_s": total - predict - grid})
        results[n] = {k: round(statistics.median(r[k] for r in rows), 3) for k in rows[0]}
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--model", default="sat-tiny", help="shipped model name or folder")
    args = parser.parse_args()
    results = measure(args.shared, args.repeats, args.model)
    one, every = results.values()
    n_all = list(results)[-1]
    print("| prompts | " + " | ".join(one) + " |")
    print("|---" * (len(one) + 1) + "|")
    for n, row in results.items():
        print(f"| {n} | " + " | ".join(f"{v:.3f}" for v in row.values()) + " |")
    print(f"\ntime({n_all} prompts) / time(1 prompt), warm segment: {every['segment_s'] / one['segment_s']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
