"""Peak memory and time of ``sat.segment`` on large CTs, each measurement in a fresh process.

A 1024x1024x1000 int16 CT (a phantom trunk at 0.5 mm, built slab by slab from a 2 mm phantom)
is segmented with one prompt; the peak resident set (``ru_maxrss``) of the process is compared
with a baseline measured in the same run: a process that imports SAT and torch, loads the
model and builds the same input, but does not segment. Their difference is what segmentation
adds on top of the input itself (2 GB of int16). A 512x512x500 case shows the trend; with
``--before SRC`` (a folder holding another version of the ``sat`` package, e.g. an export of
an older commit) that case is also run with it, for a before/after comparison in one run.

Uses the shipped model when present, otherwise a randomly initialised one of the same preset
(the memory of the input-grid side does not depend on the weights); the output says which.

Usage::

    python benchmarks/peak_memory.py [--model sat-tiny] [--quick] [--before SRC]

Writes ``evaluate/peak_memory_benchmark.md`` and prints it.
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
BIG = (1024, 1024, 1000)
SMALL = (512, 512, 500)
SPACING = 0.5  # mm, isotropic; the phantom is built at 4x this spacing and repeated
FACTOR = 4
TARGET_GB = 4.0
PROMPT = "liver"


# ---------------------------------------------------------------------------------- child side
def _peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB


def make_ct(shape: tuple[int, int, int]):
    """An int16 CT of ``shape`` at SPACING mm and its affine, filled slab by slab (no float copy)."""
    import numpy as np

    sys.path.insert(0, str(ROOT / "examples"))  # the demo's phantom
    from phantom import make_phantom

    coarse_shape = tuple(-(-n // FACTOR) for n in shape)
    ph = make_phantom(spacing=(SPACING * FACTOR,) * 3, shape=coarse_shape, seed=0)
    coarse = np.clip(np.rint(ph.image.array), -1024, 3071).astype(np.int16)
    ct = np.empty(shape, dtype=np.int16)
    for i in range(coarse_shape[0]):
        plane = coarse[i].repeat(FACTOR, axis=0).repeat(FACTOR, axis=1)[: shape[1], : shape[2]]
        ct[i * FACTOR: (i + 1) * FACTOR] = plane
    step = np.eye(4)  # fine voxel j lies at coarse coordinate (j + 0.5) / FACTOR - 0.5
    step[:3, :3] /= FACTOR
    step[:3, 3] = 0.5 / FACTOR - 0.5
    return ct, ph.image.affine @ step


def run_case(spec: dict) -> dict:
    """Runs in a fresh process: load the model, build the CT, optionally segment; peak RSS and times."""
    sys.path.insert(0, spec.get("code") or str(ROOT))  # this checkout's sat, or the one to compare with
    import sat

    t0 = time.perf_counter()
    model = sat.load_model(spec["model"], device="cpu")
    ct, affine = make_ct(tuple(spec["shape"]))
    out = {"build_s": time.perf_counter() - t0, "input_gb": ct.nbytes / 2**30}
    if spec["segment"]:
        t0, cpu0 = time.perf_counter(), time.process_time()
        seg = sat.segment((ct, affine), PROMPT, model=model, modality="ct")
        out["segment_s"], out["segment_cpu_s"] = time.perf_counter() - t0, time.process_time() - cpu0
        out["voxels"] = seg.voxels(PROMPT)
        out["labelmap"] = str(seg.labelmap.dtype)
        out["peak_segment_gb"] = _peak_gb()
        t0 = time.perf_counter()
        out["mask_voxels"] = int(seg[PROMPT].sum())  # a full-size bool mask, built on access
        out["mask_s"] = time.perf_counter() - t0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out.update(peak_gb=_peak_gb(), cpu_s=usage.ru_utime + usage.ru_stime, load_avg=os.getloadavg()[0])
    return out


# --------------------------------------------------------------------------------- parent side
def _child(spec: dict, code: Path | None = None) -> dict:
    spec = {**spec, "code": None if code is None else str(Path(code).resolve())}
    done = subprocess.run([sys.executable, __file__, "--case", json.dumps(spec)], capture_output=True,
                          encoding="utf-8", errors="replace")
    if done.returncode != 0:
        raise RuntimeError(f"case {spec} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _prepare_model(name: str, folder: Path) -> tuple[str, str]:
    """The shipped model if present, else a random one of the same preset (returns path, description)."""
    from sat import api

    if name in api.shipped_models() or Path(name).is_dir():
        return name, f"trained weights ({name})"
    import torch

    import sat.model

    torch.manual_seed(0)
    sat.model.save_pretrained(sat.model.build_model(name), folder, extra={"text_encoder": "base"})
    return str(folder), f"RANDOM {name} weights (same architecture; memory does not depend on the weights)"


def _row(name: str, base: dict, seg: dict) -> str:
    added = seg["peak_gb"] - base["peak_gb"]
    return (f"| {name} | {base['input_gb']:.2f} | {base['peak_gb']:.2f} | **{seg['peak_segment_gb']:.2f}** "
            f"| {seg['peak_segment_gb'] - base['peak_gb']:.2f} | {seg['peak_gb']:.2f} ({added:+.2f}) "
            f"| **{seg['segment_s']:.1f}** | {seg['segment_cpu_s']:.1f} | {seg['mask_s']:.1f} | {seg['voxels']:,} | {seg['labelmap']} "
            f"| {seg['cpu_s']:.0f} | {seg['load_avg']:.1f} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="sat-tiny", help="shipped model name, preset or folder")
    parser.add_argument("--quick", action="store_true", help="the 512x512x500 case only (smoke run)")
    parser.add_argument("--before", type=Path, help="folder holding another version of the sat package")
    parser.add_argument("--out", type=Path, default=ROOT / "evaluate" / "peak_memory_benchmark.md")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.case:
        print(json.dumps(run_case(json.loads(args.case))))
        return 0
    sys.path.insert(0, str(ROOT))
    rows, verdict = [], []
    with tempfile.TemporaryDirectory() as tmp:
        model, weights = _prepare_model(args.model, Path(tmp) / "model")
        runs = [("512x512x500", SMALL, None)] + ([] if args.quick else [("1024x1024x1000", BIG, None)])
        if args.before is not None:
            runs.append(("512x512x500, before", SMALL, args.before))
        for name, shape, code in runs:
            spec = {"model": model, "shape": list(shape), "segment": False}
            base = _child(spec, code)
            seg = _child({**spec, "segment": True}, code)
            rows.append(_row(name, base, seg))
            print(f"{name}: peak {seg['peak_segment_gb']:.2f} GB, segment {seg['segment_s']:.1f} s", file=sys.stderr)
            if shape == BIG and code is None:
                ok = seg["peak_segment_gb"] <= TARGET_GB
                verdict.append(f"- 1024x1024x1000 int16 CT, one prompt: peak RSS **{seg['peak_segment_gb']:.2f} GB** "
                               f"(target <= {TARGET_GB:g} GB: {'met' if ok else 'NOT met'}), "
                               f"segment **{seg['segment_s']:.1f} s** ({seg['segment_cpu_s']:.1f} CPU s)")
    text = "\n".join([
        "# Peak memory of segmentation on large CTs", "",
        f"Model: {weights}. Machine: {platform.machine()}, {os.cpu_count()} CPUs. Prompt: {PROMPT!r}. "
        f"Input: an int16 phantom CT at {SPACING} mm given as (array, affine).", "",
        "Each column comes from a fresh process; peak RSS is that process's maximum resident set "
        "(including Python, torch and the model). Baseline = imports + model + the input, no segmentation; "
        "added = segment peak - baseline. After mask access = the peak once `seg[prompt]` (a full-size bool "
        "mask) has also been built. Segment CPU s = CPU time of the call (user + system, all threads): on a "
        "shared machine (see the load average) it is steadier than the wall time. Process CPU s includes "
        "imports and building the input.", "",
        "| case | input GB | baseline peak GB | segment peak GB | added by segment GB | after mask access GB "
        "| segment s | segment CPU s | mask access s | mask voxels | labelmap dtype | process CPU s | load avg |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        *rows, "", *verdict, "",
        f"Reproduce: `python benchmarks/peak_memory.py --model {args.model}`", "",
    ])
    return publish(args.out, text)


if __name__ == "__main__":
    sys.exit(main())
