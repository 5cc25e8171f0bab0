"""Sliding-window blending: ``sat.model.blend`` against MONAI's ``sliding_window_inference``.

Both blend the same network's windows with the same gaussian weight map and the same presence
gating (MONAI through a predictor that applies ``gate_by_presence`` to every window; ``blend``
skips the per-voxel work of the (window, prompt) pairs a window vetoes). Timed in one process,
alternating the two, on the shipped model's model-space inputs: subject A's CT (example CT,
3 mm) and a 512 x 512 x 300 phantom CT at 0.8 x 0.8 x 1.5 mm, with 1, 8 and every trained
prompt. Also reports the largest difference between the two outputs (logits).

    python benchmarks/blending.py [--repeats 5] [--shared ../shared]

Writes ``evaluate/blending_benchmark.md``.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

from _publish import publish  # benchmarks/ is on the path when run as a script

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "evaluate" / "blending_benchmark.md"


def _inputs(shared: Path, segmenter) -> dict:
    """Model-space images ``[1, 1, X, Y, Z]`` of the benchmark volumes."""
    sys.path.insert(0, str(ROOT / "examples"))  # the demo's phantom
    from phantom import make_phantom

    from sat import io
    from sat.preprocess import ct_scale_of, ct_window_of, standardize

    volumes = {"phantom 512x512x300 @0.8x0.8x1.5 mm":
               make_phantom(spacing=(0.8, 0.8, 1.5), shape=(512, 512, 300), seed=0).image}
    example = shared / "data" / "ct" / "totalseg_abdomen" / "example_ct.nii.gz"
    if example.is_file():
        volumes = {"example CT (subject A)": io.load(example, modality="ct"), **volumes}
    intensity = segmenter.config.get("intensity")
    out = {}
    for name, volume in volumes.items():
        image, _ = standardize(volume, spacing=segmenter.spacing, ct_scale=ct_scale_of(intensity),
                               ct_window=ct_window_of(intensity))
        out[name] = image[None]
    return out


def _monai(model, image, queries, *, overlap: float, batch: int):
    import torch
    from monai.inferers import sliding_window_inference

    from sat.model.blend import gaussian_profile
    from sat.model.inference import gate_by_presence

    roi = tuple(model.config.patch_size)
    g = [gaussian_profile(r) for r in roi]
    weight = g[0][:, None, None] * g[1][None, :, None] * g[2][None, None, :]

    def predictor(window: torch.Tensor) -> torch.Tensor:
        out = model(window, queries, return_aux=False)
        return gate_by_presence(out.logits, out.presence)

    return sliding_window_inference(image, roi, batch, predictor, overlap=overlap, roi_weight_map=weight)[0]


def measure(shared: Path, repeats: int, model: str) -> list[dict]:
    import torch

    from sat import api
    from sat.model.blend import blend

    segmenter = api.load_model(model, device="cpu")
    net = segmenter.model.eval()
    texts = [t for plan in segmenter.trained_plans() for t in plan.texts]
    rows = []
    for name, image in _inputs(shared, segmenter).items():
        for n in sorted({1, 8, len(texts)}):
            queries = segmenter.queries(texts[:n], "ct")
            times = {"blend": [], "monai": []}
            with torch.inference_mode():
                for _ in range(repeats):
                    for method in times:
                        start = time.perf_counter()
                        if method == "blend":
                            got = blend(net, image, queries, overlap=0.25, sw_batch_size=4)
                        else:
                            want = _monai(net, image, queries, overlap=0.25, batch=4)
                        times[method].append(time.perf_counter() - start)
            blend_s, monai_s = (statistics.median(t) for t in times.values())
            rows.append({"input": f"{name}, model space {tuple(image.shape[2:])}", "prompts": n,
                         "blend_s": blend_s, "monai_s": monai_s, "ratio": monai_s / blend_s,
                         "max_diff": float((got - want).abs().max())})
    return rows


def render(rows: list[dict], repeats: int, model: str) -> str:
    lines = [f"# Blending: sat.model.blend vs MONAI sliding_window_inference ({model})", "",
             f"Median of {repeats} alternating runs in one process; machine: {platform.machine()}, "
             f"{__import__('os').cpu_count()} CPUs. Same windows (overlap 0.25, 4 per batch), weights and gating; "
             "`max |diff|` is the largest difference of the two outputs' logits.", "",
             "| input | prompts | blend (s) | MONAI (s) | MONAI / blend | max abs diff |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['input']} | {r['prompts']} | {r['blend_s']:.3f} | {r['monai_s']:.3f} | {r['ratio']:.2f} | "
              f"{r['max_diff']:.1e} |" for r in rows]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--model", default="sat-tiny", help="shipped model name or folder")
    args = parser.parse_args()
    return publish(OUT, render(measure(args.shared, args.repeats, args.model), args.repeats, args.model))


if __name__ == "__main__":
    sys.exit(main())
