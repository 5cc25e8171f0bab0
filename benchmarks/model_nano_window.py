"""Time and peak memory of ONE sat-nano window (random weights) with 61 queries.

Target: 288x288x96 window, 61 queries, <= 60 s and <= 6 GiB peak RSS, logits equal to the
straightforward float32 forward (``SATNet.forward``) within 1e-3.

Each variant runs in its own process (so peak RSS is its own); logits go to a
temporary .npy file and are compared chunk by chunk.

    python benchmarks/model_nano_window.py                     # lean path + reference check
    python benchmarks/model_nano_window.py --skip-reference    # lean path only
    python benchmarks/model_nano_window.py --window 160 160 64 # quicker, smaller window
    python benchmarks/model_nano_window.py --widths 64 64 128 256 512 768  # 64 full-resolution channels
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_SECONDS = 60.0
TARGET_GIB = 6.0
TOLERANCE = 1e-3


def _rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # ru_maxrss is KiB on Linux


def run_child(args: argparse.Namespace) -> None:
    import numpy as np
    import torch

    from sat.model import build_model
    from sat.model.lean import lean_forward

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_model(_config(args)).eval()
    image = torch.randn(1, 1, *args.window)
    queries = torch.nn.functional.normalize(torch.randn(args.queries, model.config.text_dim), dim=-1)
    rss_before = _rss_gib()
    cpu0, t0 = time.process_time(), time.perf_counter()
    if args.child == "lean":
        out = lean_forward(model, image, queries, slab=args.slab)
    else:
        with torch.no_grad():
            out = model(image, queries)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    np.save(Path(args.out) / f"{args.child}.npy", out.logits[0].numpy())
    np.save(Path(args.out) / f"{args.child}_presence.npy", out.presence[0].numpy())
    report = {"variant": args.child, "seconds": round(seconds, 2), "cpu_seconds": round(cpu, 2),
              "peak_rss_gib": round(_rss_gib(), 3), "rss_before_forward_gib": round(rss_before, 3)}
    print(json.dumps(report), flush=True)


def _config(args: argparse.Namespace):
    """The preset's config, with ``--widths`` replacing its widths when given."""
    from sat.model.config import get_config

    config = get_config(args.preset)
    return config.replace(widths=tuple(args.widths)) if args.widths else config


def _flops(args: argparse.Namespace) -> tuple[float, float]:
    """(parameters in M, TFLOP of the straightforward forward), counted on the meta device."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from sat.model import build_model

    model = build_model(_config(args), device="meta").eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.empty(1, 1, *args.window, device="meta"),
              torch.empty(args.queries, model.config.text_dim, device="meta"))
    return sum(p.numel() for p in model.parameters()) / 1e6, counter.get_total_flops() / 1e12


def _spawn(variant: str, args: argparse.Namespace, out: str) -> dict:
    cmd = [sys.executable, __file__, "--child", variant, "--out", out, "--preset", args.preset,
           "--queries", str(args.queries), "--threads", str(args.threads), "--slab", str(args.slab),
           "--window", *map(str, args.window)]
    if args.widths:
        cmd += ["--widths", *map(str, args.widths)]
    done = subprocess.run(cmd, capture_output=True, encoding="utf-8", errors="replace")
    if done.returncode:
        sys.exit(f"{variant} run failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _max_abs_diff(a_path: Path, b_path: Path) -> float:
    return _compare(a_path, b_path)["max_abs_diff"]


def _compare(a_path: Path, b_path: Path) -> dict:
    """Max |a - b|, max |b| and how many voxels change side of the 0 threshold."""
    import numpy as np

    a, b = np.load(a_path, mmap_mode="r"), np.load(b_path, mmap_mode="r")
    worst, scale, flips = 0.0, 0.0, 0
    for i in range(a.shape[0]):
        ai, bi = np.asarray(a[i]), np.asarray(b[i])
        worst = max(worst, float(np.abs(ai.astype(np.float64) - bi).max()))
        scale = max(scale, float(np.abs(bi).max()))
        flips += int(((ai > 0) != (bi > 0)).sum())
    return {"max_abs_diff": worst, "max_abs_reference": scale, "mask_voxels_differing": flips}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="sat-nano")
    parser.add_argument("--window", type=int, nargs=3, default=[288, 288, 96])
    parser.add_argument("--widths", type=int, nargs="+", help="replace the preset's U-Net widths")
    parser.add_argument("--queries", type=int, default=61)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--slab", type=int, default=8)
    parser.add_argument("--skip-reference", action="store_true", help="do not run the plain forward")
    parser.add_argument("--child", choices=["lean", "plain"], help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_child(args)
        return 0
    with tempfile.TemporaryDirectory(prefix="sat-bench-") as tmp:
        params, tflop = _flops(args)
        results = {"preset": args.preset, "widths": list(_config(args).widths), "parameters_m": round(params, 2),
                   "plain_tflop": round(tflop, 3), "window": args.window, "queries": args.queries}
        results["lean"] = _spawn("lean", args, tmp)
        if not args.skip_reference:
            results["plain"] = _spawn("plain", args, tmp)
            cmp = _compare(Path(tmp) / "lean.npy", Path(tmp) / "plain.npy")
            results["max_abs_diff_logits"] = cmp["max_abs_diff"]
            results["max_abs_logit"] = cmp["max_abs_reference"]
            results["mask_voxels_differing"] = cmp["mask_voxels_differing"]
            results["max_abs_diff_presence"] = _max_abs_diff(
                Path(tmp) / "lean_presence.npy", Path(tmp) / "plain_presence.npy")
    lean = results["lean"]
    results["meets_target"] = (
        lean["seconds"] <= TARGET_SECONDS and lean["peak_rss_gib"] <= TARGET_GIB
        and results.get("max_abs_diff_logits", 0.0) <= TOLERANCE
    )
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
