"""Cost of a correction click, of points/boxes and of zoom-in, against a plain text segmentation.

Input: a real abdominal CT of a BTCV development person (``val`` split, never a validation
person) resampled to 512 x 512 x 300 voxels (its field of view kept; linear interpolation), as
int16. In one process, with the shipped model (its prompt head and zoom-in weights):

- ``segment`` with the 8 BTCV organ prompts (the baseline);
- 5 corrective clicks on one organ with ``seg.refine`` (each at the largest error against the
  reference), every click timed;
- 3 clicks on the same organ as if the text had missed it outright (``evaluate/run_interactive.py``'s
  part "missed": the head also reads those clicks without the text, a second head pass);
- the same organ from a box alone, and from text + box;
- ``segment`` of the small structures with and without ``zoom=True``.

Usage::

    python benchmarks/interactive.py [--model sat-tiny] [--case btcv_09] [--organ liver]

Writes ``evaluate/interactive_benchmark.md`` and prints it.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from _publish import publish  # benchmarks/ is on the path when run as a script

ROOT = Path(__file__).resolve().parents[1]
SHAPE = (512, 512, 300)
ORGANS = ("spleen", "kidney_right", "kidney_left", "gallbladder", "liver", "stomach", "aorta", "pancreas")
SMALL = ("pancreas", "gallbladder", "adrenal_gland_left", "adrenal_gland_right")


def _resampled(case: str):
    """(int16 image, label, affine) of a BTCV development person at SHAPE (same field of view)."""
    import nibabel as nib
    import torch
    import torch.nn.functional as F

    sys.path.insert(0, str(ROOT / "evaluate"))
    from protocol import card_cases, shared_root

    found = {c: (img, lab) for c, img, lab in card_cases("btcv_abdomen_24", "val")}
    if case not in found:
        raise SystemExit(f"{case} is not a BTCV development person; choose one of {sorted(found)}")
    data = shared_root() / "data"
    img, lab = nib.load(data / found[case][0]), nib.load(data / found[case][1])
    x = torch.from_numpy(np.asarray(img.dataobj, np.float32))[None, None]
    y = torch.from_numpy(np.asarray(lab.dataobj).astype(np.float32))[None, None]
    image = F.interpolate(x, size=SHAPE, mode="trilinear", align_corners=True)[0, 0].round().short().numpy()
    label = F.interpolate(y, size=SHAPE, mode="nearest")[0, 0].byte().numpy()
    scale = (np.array(img.shape) - 1) / (np.array(SHAPE) - 1)
    affine = img.affine.copy()
    affine[:3, :3] = img.affine[:3, :3] * scale
    return image, label, affine


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="sat-tiny")
    parser.add_argument("--case", default="btcv_09", help="a BTCV development (val) person")
    parser.add_argument("--organ", default="liver", help="organ to correct and to box")
    parser.add_argument("--out", default=str(ROOT / "evaluate" / "interactive_benchmark.md"))
    args = parser.parse_args(argv)

    import torch

    import sat
    from sat.data.cards import load_card
    from sat.data.clicks import error_click, reference_box
    from sat.evaluation.metrics import dice

    image, label, affine = _resampled(args.case)
    concept_of = load_card(ROOT / "datasets" / "btcv_abdomen_24.yaml").concept_of()
    ref = {c: label == v for v, c in concept_of.items()}
    volume = sat.io.load((image, affine), modality="ct", keep_dtype=True)
    model = sat.load_model(args.model, device="cpu")
    world = lambda ijk: tuple(float(v) for v in (affine @ np.array([*ijk[:3], 1.0]))[:3])  # noqa: E731

    def timed(fn):
        t0 = time.perf_counter()
        out = fn()
        return out, time.perf_counter() - t0

    model.segment(volume, "liver")  # warm-up: text encoder, caches
    seg, t_auto = timed(lambda: model.segment(volume, list(ORGANS)))
    organ = args.organ

    def corrected(current, n: int):
        """``current`` after up to ``n`` corrective clicks on ``organ``, and the seconds of each."""
        seconds = []
        for _ in range(n):
            c = error_click(current[organ], ref[organ])
            if c is None:
                break
            current, t = timed(lambda c=c, s=current: s.refine(organ, add=[world(c)] if c[3] else [],
                                                                remove=[] if c[3] else [world(c)]))
            seconds.append(t)
        return current, seconds

    current, clicks = corrected(seg, 5)
    sys.path.insert(0, str(ROOT / "evaluate"))
    from run_interactive import emptied, text_blind

    with text_blind():
        blind, missed = corrected(emptied(seg, organ), 3)
    b = reference_box(ref[organ])
    corners = np.array([world((x, y, z)) for x in (b[0], b[3]) for y in (b[1], b[4]) for z in (b[2], b[5])])
    box = (*corners.min(0), *corners.max(0))
    alone, t_box = timed(lambda: model.segment(volume, box=box))
    with_text, t_tbox = timed(lambda: model.segment(volume, organ, box=box))
    small = [s for s in SMALL if ref[s].any()]
    coarse, t_coarse = timed(lambda: model.segment(volume, small))
    zoomed, t_zoom = timed(lambda: model.segment(volume, small, zoom=True))

    def d(s, key, concept):
        return f"{dice(s[key], ref[concept]):.3f}"

    rows = [
        ("segment, 8 organ prompts (baseline)", f"{t_auto:.2f}", "1.00", f"{organ} {d(seg, organ, organ)}"),
        (f"refine {organ}: one click (median of {len(clicks)})", f"{statistics.median(clicks):.2f}",
         f"{statistics.median(clicks) / t_auto:.2f}", f"after {len(clicks)}: {d(current, organ, organ)}"),
        (f"refine {organ}: slowest click", f"{max(clicks):.2f}", f"{max(clicks) / t_auto:.2f}", ""),
        (f"refine {organ} missed by the text: slowest of {len(missed)} clicks", f"{max(missed):.2f}",
         f"{max(missed) / t_auto:.2f}", f"after {len(missed)}: {d(blind, organ, organ)}"),
        (f"{organ} from a box alone", f"{t_box:.2f}", f"{t_box / t_auto:.2f}", d(alone, "region", organ)),
        (f"{organ} from text + box", f"{t_tbox:.2f}", f"{t_tbox / t_auto:.2f}", d(with_text, organ, organ)),
        (f"segment {len(small)} small structures", f"{t_coarse:.2f}", f"{t_coarse / t_auto:.2f}",
         "mean " + f"{np.mean([dice(coarse[s], ref[s]) for s in small]):.3f}"),
        (f"the same with zoom=True ({t_zoom / t_coarse:.2f}x)", f"{t_zoom:.2f}", f"{t_zoom / t_auto:.2f}",
         "mean " + f"{np.mean([dice(zoomed[s], ref[s]) for s in small]):.3f}"),
    ]
    lines = [
        "# Interactive prompts: cost on a 512 x 512 x 300 CT",
        "",
        f"`python benchmarks/interactive.py --case {args.case} --organ {organ}`; model `{args.model}`; input: "
        f"BTCV development person {args.case} resampled to {SHAPE[0]} x {SHAPE[1]} x {SHAPE[2]} (int16); "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads. Times in seconds, one process, after a warm-up call. Dice on this "
        "development person (not a validation person).",
        "",
        "| call | seconds | x baseline | Dice |",
        "|---|---|---|---|",
        *(f"| {a} | {b} | {c} | {e} |" for a, b, c, e in rows),
        "",
        "Click times: " + ", ".join(f"{t:.2f}" for t in clicks) + " s.",
        "",
    ]
    text = "\n".join(lines)
    return publish(args.out, text)


if __name__ == "__main__":
    raise SystemExit(main())
