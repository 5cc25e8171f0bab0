"""The decoder's 2x upsampling: ``sat.model.unet.upsample2x`` against ``F.conv_transpose3d``.

Both compute the same stride-2, kernel-2 transposed convolution on channels-last-3d tensors.
Timed in one process, alternating the two, forward and forward + backward, at the decoder
stages of sat-tiny's training patch (64 x 64 x 32, widths 8-128, batch 2) and of its
inference windows (batch 4).

    python benchmarks/upsampling.py [--repeats 20]

Writes ``evaluate/upsampling_benchmark.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

from _publish import publish  # benchmarks/ is on the path when run as a script

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "evaluate" / "upsampling_benchmark.md"
WIDTHS = (8, 16, 32, 64, 128)
PATCH = (64, 64, 32)


def _stages(batch: int) -> list[tuple[int, int, tuple[int, int, int], int]]:
    """(cin, cout, coarse spatial size, batch) of each decoder upsampling of the sat-tiny network."""
    out = []
    for level in range(len(WIDTHS) - 1, 0, -1):
        size = tuple(p // 2**level for p in PATCH)
        out.append((WIDTHS[level], WIDTHS[level - 1], size, batch))
    return out


def measure(repeats: int) -> list[dict]:
    import torch
    import torch.nn.functional as F

    from sat.model.unet import upsample2x

    methods = {"upsample2x": upsample2x, "conv_transpose3d": lambda x, w, b: F.conv_transpose3d(x, w, b, stride=2)}
    rows = []
    for backward in (False, True):
        for cin, cout, size, batch in _stages(2 if backward else 4):
            torch.manual_seed(0)
            x = torch.randn(batch, cin, *size).contiguous(memory_format=torch.channels_last_3d)
            w = torch.randn(cin, cout, 2, 2, 2, requires_grad=backward)
            b = torch.randn(cout, requires_grad=backward)
            x.requires_grad_(backward)
            times = {m: [] for m in methods}
            results = {}
            for _ in range(repeats):
                for name, fn in methods.items():
                    start = time.perf_counter()
                    if backward:
                        y = fn(x, w, b)
                        y.square().mean().backward()
                        results[name] = w.grad.clone()
                        w.grad = b.grad = x.grad = None
                    else:
                        with torch.inference_mode():
                            results[name] = fn(x, w, b)
                    times[name].append(time.perf_counter() - start)
            ours, ref = (statistics.median(times[m]) * 1e3 for m in methods)
            rows.append({"pass": "forward + backward" if backward else "forward (inference)",
                         "stage": f"{cin}->{cout} ch, {batch} x {size}", "ours_ms": ours, "torch_ms": ref,
                         "ratio": ref / ours,
                         "max_diff": float((results["upsample2x"] - results["conv_transpose3d"]).abs().max())})
    return rows


def render(rows: list[dict], repeats: int) -> str:
    lines = ["# Decoder upsampling: upsample2x vs F.conv_transpose3d (channels-last-3d)", "",
             f"Median of {repeats} alternating runs in one process; machine: {platform.machine()}, {os.cpu_count()} "
             "CPUs. `max abs diff`: outputs (forward) or weight gradients (backward) of the two.", "",
             "| pass | stage (coarse input) | upsample2x (ms) | conv_transpose3d (ms) | conv_transpose3d / upsample2x "
             "| max abs diff |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['pass']} | {r['stage']} | {r['ours_ms']:.2f} | {r['torch_ms']:.2f} | {r['ratio']:.2f} | "
              f"{r['max_diff']:.1e} |" for r in rows]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    return publish(OUT, render(measure(args.repeats), args.repeats))


if __name__ == "__main__":
    sys.exit(main())
