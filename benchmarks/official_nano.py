"""The original SAT-Nano network run through SAT: seconds and peak memory per 288x288x96 window, and exactness.

Compares SAT's forward of the original SAT-Nano configuration (``sat-official-nano``,
random weights, the slab-wise CPU forward of :mod:`sat.model.lean`, the original blending)
with the cost of the authors' code on this machine class (2 cores, float32, random weights):
79 s and 13.4 GiB peak RSS per window, 3 queries, on an otherwise idle machine.

With ``--reference DIR`` (checkpoints in the released layout made with the authors' code and
seeded random weights: ``vision.pth``, ``text.pth``, ``ct.nii.gz`` - a CT in RAS at 1x1x3 mm with
every voxel > 0 HU, one window - and ``expected.npy``, the sigmoid of the original forward,
[queries, 288, 288, 96] float32) the checkpoints are imported with ``sat import-official`` and the
CT is segmented with ``probabilities=True``; the report gives the largest per-voxel difference.

Each measurement runs in its own process (peak RSS is its own). Writes
``evaluate/official_nano_benchmark.md`` and prints it.

    python benchmarks/official_nano.py                      # the window alone (random queries)
    python benchmarks/official_nano.py --reference REF_DIR --tokenizer MPNET_TOKENIZER_DIR
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ORIGINAL_SECONDS = 79.0  # the authors' code, one 288x288x96 window, 3 queries, idle 2-core CPU
ORIGINAL_GIB = 13.4
WINDOW = (288, 288, 96)


def _rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def child_window(args: argparse.Namespace) -> dict:
    import torch

    from sat.model import build_model, predict

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_model(args.preset).eval()
    image = torch.randn(1, 1, *WINDOW)
    queries = torch.randn(args.queries, model.config.text_dim)
    before = _rss_gib()
    t0, cpu0 = time.perf_counter(), time.process_time()
    predict(model, image, queries, overlap=0.5, official_blend=True)
    return {"seconds": round(time.perf_counter() - t0, 1), "cpu_seconds": round(time.process_time() - cpu0, 1),
            "peak_rss_gib": round(_rss_gib(), 2), "rss_before_gib": round(before, 2)}


def child_reference(args: argparse.Namespace) -> dict:
    import numpy as np
    import torch

    import sat
    from sat.model.import_official import import_official

    torch.set_num_threads(args.threads)
    ref = Path(args.reference)
    with tempfile.TemporaryDirectory(prefix="sat-official-") as tmp:
        folder = import_official(ref / "vision.pth", ref / "text.pth", tokenizer=args.tokenizer,
                                 output=Path(tmp) / "model", vocabulary=args.vocabulary)
        model = sat.load_model(folder, device="cpu")
        meta = json.loads((ref / "meta.json").read_text(encoding="utf-8"))
        before = _rss_gib()
        t0, cpu0 = time.perf_counter(), time.process_time()
        seg = model.segment(ref / "ct.nii.gz", meta["prompts"], modality="ct", probabilities=True)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    expected = np.load(ref / "expected.npy", mmap_mode="r")
    worst, flips = 0.0, 0
    for i, prompt in enumerate(meta["prompts"]):
        prob, exp = seg.probabilities[prompt], np.asarray(expected[i])
        worst = max(worst, float(np.abs(prob.astype(np.float64) - exp).max()))
        flips += int((seg[prompt] != (exp > 0.5)).sum())
    return {"seconds": round(seconds, 1), "cpu_seconds": round(cpu, 1), "peak_rss_gib": round(_rss_gib(), 2),
            "rss_before_gib": round(before, 2),
            "queries": len(meta["prompts"]), "max_abs_diff_probability": worst, "mask_voxels_differing": flips}


def _spawn(kind: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, "--preset", args.preset, "--queries", str(args.queries),
           "--threads", str(args.threads)]
    for flag in ("reference", "tokenizer", "vocabulary"):
        if getattr(args, flag):
            cmd += [f"--{flag}", str(getattr(args, flag))]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(cmd, capture_output=True, encoding="utf-8", errors="replace", cwd=ROOT, env=env)
    if done.returncode:
        sys.exit(f"{kind} run failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _report(results: dict, args: argparse.Namespace) -> str:
    win = results["window"]
    lines = [
        "# The original SAT-Nano network through SAT (CPU)",
        "",
        f"`python benchmarks/official_nano.py{' --reference ...' if 'reference' in results else ''}`; "
        f"{args.threads} threads, float32, random weights, one {'x'.join(map(str, WINDOW))} window, "
        f"{args.queries} queries.",
        "",
        "| | seconds per window | CPU seconds | peak RSS (GiB) |",
        "|---|---:|---:|---:|",
        f"| original code (authors' scripts; idle machine) | {args.original_seconds:g} | - | {args.original_gib:g} |",
        f"| SAT, `{args.preset}` (slab-wise forward, original blending) | {win['seconds']:g} | {win['cpu_seconds']:g} | "
        f"{win['peak_rss_gib']:g} |",
    ]
    if "reference" in results:
        ref = results["reference"]
        lines += [
            f"| SAT, imported checkpoints, whole `segment()` (text encoder included) | {ref['seconds']:g} | "
            f"{ref['cpu_seconds']:g} | {ref['peak_rss_gib']:g} |",
            "",
            f"Exactness against the original forward (the authors' code, same seeded random weights, a CT in RAS "
            f"at 1x1x3 mm with every voxel > 0 HU): largest per-voxel difference of the probabilities "
            f"{ref['max_abs_diff_probability']:.2e} over {ref['queries']} x {'x'.join(map(str, WINDOW))} voxels; "
            f"{ref['mask_voxels_differing']} mask voxels differ at threshold 0.5.",
        ]
    if args.note:
        lines += ["", args.note]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="sat-official-nano")
    parser.add_argument("--queries", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reference", type=Path, help="folder made with the authors' code (see the docstring)")
    parser.add_argument("--tokenizer", type=Path, help="MPNet tokenizer folder (with --reference)")
    parser.add_argument("--vocabulary", type=Path, help="terminology_list.json (default: ../shared/terms/sat/)")
    parser.add_argument("--original-seconds", type=float, default=ORIGINAL_SECONDS)
    parser.add_argument("--original-gib", type=float, default=ORIGINAL_GIB)
    parser.add_argument("--note", default="", help="a sentence added to the report (e.g. machine load)")
    parser.add_argument("--out", type=Path, default=ROOT / "evaluate" / "official_nano_benchmark.md")
    parser.add_argument("--child", choices=["window", "reference"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child_window(args) if args.child == "window" else child_reference(args)), flush=True)
        return 0
    if args.reference and not args.tokenizer:
        parser.error("--reference needs --tokenizer")
    results = {"window": _spawn("window", args)}
    if args.reference:
        results["reference"] = _spawn("reference", args)
    text = _report(results, args)
    tmp = args.out.with_suffix(".md.part")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(args.out)
    print(text + json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
