"""Inference speed and memory of SAT: wall time and peak RSS per case, each case in a fresh process.

Cases: the real CT ``../shared/data/ct/totalseg_abdomen/example_ct.nii.gz`` with 1, 10 and all
its 61 TotalSegmentator classes as prompts; a 512x512x300 CT-sized phantom at 0.8x0.8x1.5 mm
(1 and 61 prompts); and a scaling series of phantoms of growing field of view. Reports the
achieved GFLOP/s of the network against this machine's float32 matmul GFLOP/s, and
time(all prompts) / time(1 prompt). Uses the shipped model when present, otherwise a
randomly initialised one of the same preset (same speed); the output says which. Each case
runs with the opt-in allocator tuning (``sat.model.allocator.tune()``, as
``sat segment --tune-allocator``); ``benchmarks/peak_memory.py`` measures the default.

Usage::

    python benchmarks/inference.py [--model sat-tiny] [--shared ../shared] [--quick]

Writes ``evaluate/inference_benchmark.md`` and prints it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _publish import publish  # benchmarks/ is on the path when run as a script

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
EXAMPLE_CT = Path("data/ct/totalseg_abdomen/example_ct.nii.gz")
EXAMPLE_SEG = Path("data/ct/totalseg_abdomen/example_seg_fast_force_split.nii.gz")
CLASS_MAP = Path("data/ct/totalsegmentator_class_map.json")
BIG = {"shape": (512, 512, 300), "spacing": (0.8, 0.8, 1.5)}
SCALING = [(160, 160, 120), (256, 256, 192), (384, 384, 288)]  # 1 mm phantoms, growing field of view


# ---------------------------------------------------------------------------------- child side
def _run_case(spec: dict) -> dict:
    """Runs in a fresh process: load model, read volume, segment, save; returns timings and peak RSS."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    import sat.model
    from sat import api, io
    from sat.model import allocator

    allocator.tune()  # opt-in (sat segment --tune-allocator); every published figure was measured with it
    t0 = time.perf_counter()
    segmenter = api.load_model(spec["model"], device="cpu")
    t_model = time.perf_counter() - t0
    real_predict, predict_time, windows = sat.model.predict, [], []

    def timed_predict(*args, **kwargs):
        windows.append(_n_windows(args[1].shape[-3:], segmenter.model.config.patch_size, kwargs.get("overlap", 0.25)))
        t = time.perf_counter()
        out = real_predict(*args, **kwargs)
        predict_time.append(time.perf_counter() - t)
        return out

    sat.model.predict = timed_predict
    t0 = time.perf_counter()
    volume = io.load(spec["path"])
    t_read = time.perf_counter() - t0
    t0 = time.perf_counter()
    seg = segmenter.segment(volume, spec["prompts"], on_untrained="text")  # untrained names too: same work
    t_segment = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        seg.save(Path(out) / "seg")
        t_save = time.perf_counter() - t0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    rss_gb = usage.ru_maxrss / 2**20  # Linux: KiB
    n_windows = sum(windows)
    n_queries = len({t for p in segmenter.plan(spec["prompts"], on_untrained="text") for t in p.texts})
    window = torch.zeros(1, 1, *segmenter.model.config.patch_size)
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        segmenter.model(window, torch.zeros(n_queries, segmenter.model.config.text_dim), return_aux=False)
    flops = counter.get_total_flops() * n_windows
    return {
        "shape": list(volume.shape), "spacing": [round(s, 2) for s in volume.spacing],
        "prompts": len(spec["prompts"]), "queries": n_queries, "windows": n_windows,
        "load_model_s": t_model, "read_s": t_read, "segment_s": t_segment, "save_s": t_save,
        "end_to_end_s": t_model + t_read + t_segment + t_save, "predict_s": sum(predict_time),
        "gflop": flops / 1e9, "peak_rss_gb": rss_gb, "cpu_s": usage.ru_utime + usage.ru_stime,
        "load_avg": os.getloadavg()[0], "voxels_found": int(sum(seg.voxels(p) for p in seg.prompts)),
    }


def _n_windows(shape, roi, overlap: float) -> int:
    """Sliding windows MONAI visits on a grid padded to at least ``roi`` (its scan-interval rule)."""
    total = 1
    for size, r in zip(shape, roi, strict=True):
        step = max(1, int(r * (1 - overlap)))
        total *= 1 if size <= r else -(-(size - r) // step) + 1
    return total


# --------------------------------------------------------------------------------- parent side
def matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
    """Best float32 matmul throughput of this machine (GFLOP/s) with torch's default threads."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = min(_timeit(lambda: torch.mm(a, b)) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def _timeit(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _child(spec: dict) -> dict:
    done = subprocess.run([sys.executable, __file__, "--case", json.dumps(spec)], capture_output=True, encoding="utf-8", errors="replace")
    if done.returncode != 0:
        raise RuntimeError(f"case {spec['name']} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _make_volume(path: Path, shape, spacing, seed: int = 0) -> None:
    """A phantom CT (int16 HU, uncompressed NIfTI like a scanner export) written by a helper process."""
    code = (
        f"import sys, numpy as np; sys.path.insert(0, {str(ROOT / 'examples')!r}); from sat import io; "
        "from phantom import make_phantom; "
        f"ph = make_phantom(spacing={tuple(spacing)}, shape={tuple(shape)}, seed={seed}); "
        "io.save(np.clip(np.rint(ph.image.array), -1024, 3071).astype(np.int16), sys.argv[1], affine=ph.image.affine)"
    )
    subprocess.run([sys.executable, "-c", code, str(path)], check=True)


def _prepare_model(name: str, prompts: list[str], folder: Path) -> tuple[str, str]:
    """The shipped model if present, else a random one of the same preset (returns path, description)."""
    from sat import api

    if name in api.shipped_models() or Path(name).is_dir():
        return name, f"trained weights ({name})"
    import torch

    import sat.model

    torch.manual_seed(0)
    sat.model.save_pretrained(sat.model.build_model(name), folder,
                              extra={"text_encoder": "base", "concepts": prompts})
    return str(folder), f"RANDOM {name} weights (no shipped model yet; same architecture and speed)"


def _example_prompts(shared: Path) -> list[str]:
    import nibabel as nib
    import numpy as np

    names = json.loads((shared / CLASS_MAP).read_text())["total"]
    values = np.unique(np.asarray(nib.load(shared / EXAMPLE_SEG).dataobj))
    return [names[str(int(v))].lower() for v in values if v != 0]


def _cases(shared: Path, tmp: Path, model: str, prompts: list[str], quick: bool) -> list[dict]:
    example = str(shared / EXAMPLE_CT)
    cases = [{"name": f"example_ct, {n} prompt{'s' * (n > 1)}", "path": example, "prompts": prompts[:n]}
             for n in (1, 10, len(prompts))]
    big = tmp / "ct_512x512x300.nii"
    _make_volume(big, BIG["shape"], BIG["spacing"])
    cases += [{"name": f"512x512x300 @0.8x0.8x1.5, {n} prompt{'s' * (n > 1)}", "path": str(big),
               "prompts": prompts[:n]} for n in ((1,) if quick else (1, len(prompts)))]
    for shape in SCALING[:1] if quick else SCALING:
        path = tmp / f"ct_{'x'.join(map(str, shape))}.nii"
        _make_volume(path, shape, (1.0, 1.0, 1.0))
        cases.append({"name": f"scaling {'x'.join(map(str, shape))} @1mm, 1 prompt", "path": str(path),
                      "prompts": prompts[:1]})
    for case in cases:
        case["model"] = model
    return cases


def _table(results: list[tuple[str, dict]], peak: float) -> list[str]:
    lines = [
        "| case | input grid | prompts | windows | load model s | read s | segment s | save s | end-to-end s "
        "| network s | GFLOP | GFLOP/s | % of matmul | peak RSS GB | process CPU s | load avg |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results:
        rate = r["gflop"] / r["predict_s"] if r["predict_s"] else 0.0
        lines.append(
            f"| {name} | {'x'.join(map(str, r['shape']))} | {r['prompts']} | {r['windows']} | {r['load_model_s']:.2f} "
            f"| {r['read_s']:.2f} | {r['segment_s']:.2f} | {r['save_s']:.2f} | **{r['end_to_end_s']:.2f}** "
            f"| {r['predict_s']:.2f} | {r['gflop']:.0f} | {rate:.1f} | {100 * rate / peak:.0f}% | {r['peak_rss_gb']:.2f} "
            f"| {r.get('cpu_s', 0):.1f} | {r.get('load_avg', 0):.1f} |"
        )
    return lines


def _summary(results: dict[str, dict], n_all: int) -> list[str]:
    one, every = results.get("example_ct, 1 prompt"), results.get(f"example_ct, {n_all} prompts")
    big = results.get("512x512x300 @0.8x0.8x1.5, 1 prompt")
    lines = []
    if one and every:
        ratio = every["segment_s"] / one["segment_s"]
        lines.append(f"- time(all {n_all} prompts) / time(1 prompt), example_ct, segment: **{ratio:.2f}** "
                     f"(target < 1.5: {'met' if ratio < 1.5 else 'NOT met'})")
        lines.append(f"- example_ct, all {n_all} prompts, end to end: **{every['end_to_end_s']:.1f} s** "
                     f"(target < 10 s: {'met' if every['end_to_end_s'] < 10 else 'NOT met'})")
    if big:
        lines.append(f"- 512x512x300, 1 prompt: **{big['end_to_end_s']:.1f} s**, peak RSS **{big['peak_rss_gb']:.2f} GB** "
                     f"(targets < 60 s, < 4 GB: {'met' if big['end_to_end_s'] < 60 and big['peak_rss_gb'] < 4 else 'NOT met'})")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="sat-tiny", help="shipped model name, preset or folder")
    parser.add_argument("--shared", type=Path, default=SHARED, help="the shared data folder (default ../shared)")
    parser.add_argument("--out", type=Path, default=ROOT / "evaluate" / "inference_benchmark.md")
    parser.add_argument("--quick", action="store_true", help="fewer cases (smoke run)")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.case:
        print(json.dumps(_run_case(json.loads(args.case))))
        return 0
    if not (args.shared / EXAMPLE_CT).is_file():
        print(f"benchmark needs {args.shared / EXAMPLE_CT}; pass --shared", file=sys.stderr)
        return 1
    peak = matmul_gflops()
    prompts = _example_prompts(args.shared)
    with tempfile.TemporaryDirectory() as tmp:
        model, weights = _prepare_model(args.model, prompts, Path(tmp) / "model")
        results = {}
        for case in _cases(args.shared, Path(tmp), model, prompts, args.quick):
            results[case["name"]] = _child(case)
            print(f"{case['name']}: {results[case['name']]['end_to_end_s']:.2f} s", file=sys.stderr)
    import torch

    text = "\n".join([
        "# Inference benchmark", "",
        f"Model: {weights}. Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; float32 matmul peak "
        f"**{peak:.1f} GFLOP/s** (2048x2048).", "",
        "Each case runs in a fresh process (peak RSS = that process's maximum resident set). "
        "End to end = load model + read volume + segment + save outputs (Python start-up and imports excluded). "
        "Network s = time inside the sliding-window predictor; GFLOP counted with torch's FlopCounterMode "
        "on one window x number of windows. Synthetic volumes are phantoms stored as int16 uncompressed NIfTI. "
        "Every case runs with the opt-in allocator tuning (`sat.model.allocator.tune()`). "
        "Process CPU s (user + sys, including imports) and the 1-minute load average show how much the "
        f"machine was shared: on {os.cpu_count()} cores, a load above {os.cpu_count()} inflates wall times.", "",
        *_table(list(results.items()), peak), "",
        *_summary(results, len(prompts)), "",
        f"Reproduce: `python benchmarks/inference.py --model {args.model}`", "",
    ])
    return publish(args.out, text)


if __name__ == "__main__":
    sys.exit(main())
