"""SAT vs per-dataset specialists on the labelled data of ../shared/data: one command.

    .venv/bin/python evaluate/run_comparison.py            # or: make -f evaluate/Makefile evaluate

1. segments every evaluation case (protocol.CASES) with the shipped SAT model (``sat.load_model``)
   prompted with every concept of the case's dataset card that the model was trained on, and
   with the case's specialist (evaluate/specialists/<name>, trained by train_specialists.py);
   predictions go to ``--work`` (label maps on each image's original grid);
2. evaluates both against the reference label maps with the same card (``sat.evaluation.evaluate``);
3. writes evaluate/results/: per-method tables, ``compare.csv/.md``, the per-class Dice plots,
   ``cost.csv/.md`` (parameters, inference time) and refreshes the tables in evaluate/README.md.

``--synthetic`` replaces SAT by a degraded copy of the references (method "synthetic") to test
the pipeline while no trained SAT model exists; its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from protocol import CASES, PROJECT, SPECIALISTS, TARGETS, card, class_names, shared_root  # noqa: E402
from readme import update_readme  # noqa: E402

log = logging.getLogger("run_comparison")


def _n_params(module) -> int:
    return int(sum(p.numel() for p in module.parameters()))


def predict_specialists(
    data: Path, work: Path, spec_dir: Path, *, overlap: float, reuse: bool = False
) -> tuple[dict, list[dict]]:
    """Specialist label maps of every case -> ({case key: path}, cost rows); ``reuse`` keeps earlier ones."""
    from sat import io
    from sat.evaluation.specialist import load_specialist
    from sat.evaluation.specialist_train import predict_specialist

    saved = work / "specialist" / "costs.json"
    if reuse and saved.is_file():
        costs = json.loads(saved.read_text())
        paths = {(c["dataset"], c["case"]): work / "specialist" / c["dataset"] / f"{c['case']}.nii.gz" for c in costs}
        if all(p.is_file() for p in paths.values()):
            log.info("reusing %d specialist predictions from %s", len(paths), saved.parent)
            return paths, costs
    paths, costs, loaded = {}, [], {}
    for case in CASES:
        name = case["specialist"]
        if name not in loaded and not (spec_dir / name / "plan.json").is_file():
            log.warning("no specialist %s in %s: its cases count as missing predictions", name, spec_dir)
            continue
        if name not in loaded:
            loaded[name] = load_specialist(spec_dir / name)
        model, plan, meta = loaded[name]
        start = time.perf_counter()
        labelmap, affine = predict_specialist(model, plan, data / case["image"], overlap=overlap)
        seconds = time.perf_counter() - start
        out = io.save(labelmap, work / "specialist" / case["dataset"] / f"{case['case']}.nii.gz", affine=affine)
        paths[(case["dataset"], case["case"])] = out
        costs.append({"method": "specialist", "model": name, "dataset": case["dataset"], "case": case["case"],
                      "seconds": seconds, "parameters": _n_params(model), "train_steps": meta.get("steps")})
        log.info("specialist %s on %s/%s: %.1fs", name, case["dataset"], case["case"], seconds)
    saved.parent.mkdir(parents=True, exist_ok=True)
    saved.write_text(json.dumps(costs, indent=1))
    return paths, costs


def predict_sat(data: Path, work: Path, model_name: str, *, overlap: float) -> tuple[dict, list[dict]]:
    """SAT segmentation (``sat segment`` output folders) of every case -> ({case key: folder}, cost rows)."""
    import sat
    from sat.data.cards import load_card
    from sat.evaluation.labels import read_mapping

    segmenter = sat.load_model(model_name, device="cpu")
    trained = set(segmenter.concepts)
    n_net, n_text = _n_params(segmenter.model), _n_params(segmenter.text_encoder)
    paths, costs = {}, []
    for case in CASES:
        concepts = sorted(set(read_mapping(card(case["dataset"])).values()))
        prompts = [c for c in concepts if not trained or c in trained]
        if not prompts:
            log.warning("SAT model knows none of the classes of %s: its case counts as missing", case["dataset"])
            continue
        start = time.perf_counter()
        modality = load_card(card(case["dataset"])).modality  # the card says it; never left to a guess
        seg = segmenter.segment(data / case["image"], prompts, overlap=overlap, modality=modality)
        seconds = time.perf_counter() - start
        out = seg.save(work / "sat" / case["dataset"] / case["case"])
        paths[(case["dataset"], case["case"])] = out
        costs.append({"method": "SAT", "model": model_name, "dataset": case["dataset"], "case": case["case"],
                      "seconds": seconds, "parameters": n_net, "text_encoder_parameters": n_text,
                      "prompts": len(prompts)})
        log.info("SAT on %s/%s: %d prompts, %.1fs", case["dataset"], case["case"], len(prompts), seconds)
    return paths, costs


def predict_synthetic(data: Path, work: Path) -> tuple[dict, list[dict]]:
    """A stand-in prediction: each reference shifted by one voxel with one class dropped (pipeline test)."""
    from sat import io

    paths = {}
    for case in CASES:
        ref = io.load_label(data / case["label"])
        arr = np.roll(np.asarray(ref.array), 1, axis=0)
        values = [v for v in np.unique(arr) if v]
        if values:
            arr[arr == values[0]] = 0
        paths[(case["dataset"], case["case"])] = io.save(
            arr.astype(np.int16), work / "synthetic_pred" / case["dataset"] / f"{case['case']}.nii.gz", affine=ref.affine)
    return paths, []


def evaluate_method(method: str, preds: dict, data: Path, *, pred_labels=None) -> pd.DataFrame:
    """Per-case table of one method over every evaluation case (same cards for every method)."""
    from sat.evaluation import evaluate

    frames = []
    for case in CASES:
        key = (case["dataset"], case["case"])
        labels = pred_labels(case) if pred_labels else None
        df = evaluate({case["case"]: preds[key]} if key in preds else {}, {case["case"]: data / case["label"]},
                      labels=card(case["dataset"]), pred_labels=labels, method=method, dataset=case["dataset"])
        frames.append(df.assign(split=case["split"]))
    return pd.concat(frames, ignore_index=True)


def _specialist_labels(data: Path):
    return lambda case: class_names(data, SPECIALISTS[case["specialist"]])


def cost_table(costs: list[dict], spec_dir: Path) -> pd.DataFrame:
    """Parameters and mean inference seconds per case: SAT vs the sum over specialists."""
    df = pd.DataFrame(costs)
    rows = []
    for method, group in df.groupby("method", sort=False):
        models = group.drop_duplicates("model")
        row = {"method": method, "models": len(models), "parameters": int(models["parameters"].sum())}
        if "text_encoder_parameters" in group and group["text_encoder_parameters"].notna().any():
            row["text_encoder_parameters"] = int(models["text_encoder_parameters"].fillna(0).sum())
        row["seconds_per_case"] = float(group["seconds"].mean())
        held_out = {c["case"] for c in CASES if c["split"] == "held-out"}
        row["seconds_held_out"] = float(group[group["case"].isin(held_out)]["seconds"].sum())
        rows.append(row)
    if (spec_dir / "totalseg_abdomen" / "train_log.json").is_file():
        logs = [json.loads(p.read_text()) for p in sorted(spec_dir.glob("*/train_log.json"))]
        spec = next((r for r in rows if r["method"] == "specialist"), None)
        if spec is not None:
            spec["train_minutes_total"] = sum(lg["minutes"] for lg in logs)
            spec["train_steps"] = ";".join(f"{lg['dataset']}={lg['steps']}" for lg in logs)
    return pd.DataFrame(rows)


def write_results(
    frames: dict[str, pd.DataFrame], costs: pd.DataFrame, out: Path, *, a: str | None
) -> dict[str, pd.DataFrame]:
    """Every table and plot under ``out``; returns the tables the README shows (``a`` None: specialists only)."""
    from sat.evaluation.compare import compare, compare_people, plot_compare
    from sat.evaluation.report import (
        over_people,
        per_person,
        summary_tables,
        write_table,
        write_tables,
    )

    shown = {}
    for method, df in frames.items():
        tables = summary_tables(df)
        tables["per_split"] = summary_tables(df.assign(dataset=df["split"]))["per_dataset"].rename(
            columns={"dataset": "split"})
        write_tables(tables, out, prefix=f"{method.lower()}_")
        shown[f"{method}_per_class"], shown[f"{method}_per_split"] = tables["per_class"], tables["per_split"]
    write_table(costs, out / "cost.csv")
    shown["cost"] = costs
    both = pd.concat(frames.values(), ignore_index=True)
    shown["people"] = over_people(both, TARGETS)
    write_table(shown["people"], out / "people_summary.csv")
    write_table(per_person(both, TARGETS), out / "people_per_person.csv")
    if a is None:
        return shown
    for split in ("validation", "held-out", "train"):
        part = both[both["split"] == split]
        if set(part.loc[part["method"] == a, "case"]).isdisjoint(part.loc[part["method"] == "specialist", "case"]):
            continue
        table = compare(part, a=a, b="specialist")
        write_table(table, out / f"compare_{split}.csv")
        plot_compare(table[table["concept"] != "mean"], out / f"compare_dice_{split}.png", a=a, b="specialist",
                     title=f"{a} vs specialist, per-class Dice ({split} cases)")
        shown[f"compare_{split}"] = table
    validation = both[both["split"] == "validation"]
    if (validation["method"] == "specialist").any():
        shown["compare_people"] = compare_people(validation, a=a, b="specialist", targets=TARGETS)
        write_table(shown["compare_people"], out / "compare_people_validation.csv")
    return shown


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="SAT vs per-dataset specialists on ../shared/data.")
    parser.add_argument("--shared", type=Path, default=shared_root(), help="folder holding data/")
    parser.add_argument("--model", default="sat-tiny", help="shipped SAT model name or model folder")
    parser.add_argument("--specialists", type=Path, default=HERE / "specialists")
    parser.add_argument("--work", type=Path, default=PROJECT / "runs" / "evaluate", help="predictions go here")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--synthetic", action="store_true", help="use a degraded reference instead of SAT")
    parser.add_argument("--specialists-only", action="store_true", help="no SAT (e.g. before a model is shipped)")
    parser.add_argument("--overlap", type=float, default=0.5,
                        help="sliding-window overlap for both methods (nnU-Net's default and sat-tiny's)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads for both methods")
    parser.add_argument("--reuse-specialists", action="store_true", help="reuse specialist predictions in --work")
    parser.add_argument("--readme", type=Path, default=HERE / "README.md", help="README whose tables are refreshed")
    parser.add_argument("--no-readme", action="store_true", help="do not refresh the README")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    import torch

    torch.set_num_threads(args.threads)
    data, start = args.shared / "data", time.time()
    spec_preds, spec_costs = predict_specialists(data, args.work, args.specialists, overlap=args.overlap,
                                                 reuse=args.reuse_specialists)
    frames = {"specialist": evaluate_method("specialist", spec_preds, data, pred_labels=_specialist_labels(data))}
    a, costs = None, []
    if args.synthetic:
        a, (preds, costs) = "synthetic", predict_synthetic(data, args.work)
    elif not args.specialists_only:
        a, (preds, costs) = "SAT", predict_sat(data, args.work, args.model, overlap=args.overlap)
    if a is not None:
        frames = {a: evaluate_method(a, preds, data), **frames}
    shown = write_results(frames, cost_table(costs + spec_costs, args.specialists), args.out, a=a)
    if not args.no_readme:
        update_readme(args.readme, shown, a=a, model=args.model if a == "SAT" else a)
    print(f"done in {time.time() - start:.0f}s; results in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
