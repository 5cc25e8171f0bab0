"""Interactive prompts on the validation people: clicks, boxes and zoom-in against the automatic masks.

For each validation person (the `test` people of the BTCV and CHAOS cards, never trained on):

1. **clicks**: the 8 BTCV organs (4 CHAOS organs) segmented from text, then for each organ up to
   5 corrective clicks, each placed by a simulated user at the most interior voxel of the
   largest error region of the current mask against the reference (positive in a missed region,
   negative in a false one: :func:`sat.data.clicks.error_click`), applied with
   ``seg.refine``; Dice after 0, 1, 3 and 5 clicks;
2. **box**: liver, spleen and kidneys from the box a user draws around the reference
   (:func:`sat.data.clicks.reference_box`) alone (no text), from a box ``--loose-mm`` (10 mm)
   larger on every side alone, and from the reference box with their text;
3. **zoom** (BTCV): pancreas, gallbladder and adrenal glands with and without ``zoom=True``, and
   the wall-clock time of both calls in the same process;
4. **missed** (not in the default parts): each organ as if the network had missed it outright:
   its mask emptied and its text logit read as ``MISSED`` wherever the prompt head reads it, then
   the same corrective clicks (what clicks recover of a structure the text does not find).

Writes ``evaluate/results/interactive_per_case.csv`` (one row per person, organ and setting),
``interactive_summary.csv``/``.md`` (mean over people of each person's mean over the organs,
95 % bootstrap interval over people) and ``interactive_clicks.png``.

Usage (from the project root; ~20 min on 2 CPU cores)::

    python evaluate/run_interactive.py [--model sat-tiny] [--datasets btcv_abdomen_24 chaos_t2_16]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import logging
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from protocol import PROJECT, TARGETS, card, card_cases, shared_root  # noqa: E402

CLICKS = (1, 3, 5)
BOX_TARGETS = ("liver", "spleen", "kidney_left", "kidney_right")
ZOOM_TARGETS = ("pancreas", "gallbladder", "adrenal_gland_left", "adrenal_gland_right")
RESULTS = PROJECT / "evaluate" / "results"
LOOSE_MM = 10.0  # part "box": a box this much larger on every side than the reference's (default)
MISSED = -10.0  # the text logit of a structure the network missed (part "missed")


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    from sat.evaluation.metrics import dice

    return float(dice(a, b))


def _world(affine: np.ndarray, ijk) -> tuple[float, float, float]:
    return tuple(float(v) for v in (affine @ np.array([*ijk[:3], 1.0]))[:3])  # type: ignore[return-value]


def _box_world(affine: np.ndarray, ref: np.ndarray) -> tuple[float, ...]:
    from sat.data.clicks import reference_box

    b = reference_box(ref)
    corners = np.array([_world(affine, (x, y, z)) for x in (b[0], b[3]) for y in (b[1], b[4]) for z in (b[2], b[5])])
    return (*corners.min(0), *corners.max(0))


@contextlib.contextmanager
def text_blind():
    """Within this block the prompt head reads the network's text logit as ``MISSED`` everywhere."""
    import torch

    import sat.model.prompt_head as ph

    original = ph.network_parts

    def blind(net, image, queries, *, gate=True):
        logit, feats = original(net, image, queries, gate=gate)
        return torch.full_like(logit, MISSED), feats

    ph.network_parts = blind
    try:
        yield
    finally:
        ph.network_parts = original


def emptied(seg, concept: str):
    """``seg`` with ``concept``'s mask and logits emptied (a structure the automatic pass missed)."""
    import torch

    session = copy.copy(seg._session)
    session.logits = list(session.logits)
    i = session._index(concept)
    session.logits[i] = (torch.full_like(session.logits[i][0], MISSED),)
    return session.result()


def click_rows(model, image: str, refs: dict[str, np.ndarray], affine: np.ndarray, modality: str, *,
               missed: bool = False) -> list[dict]:
    """Dice after 0, 1, 3, 5 corrective clicks of every organ (``refs``: concept -> reference mask);
    with ``missed``, from the organ missed outright (:func:`text_blind`, :func:`emptied`)."""
    from sat.data.clicks import error_click

    rows = []
    seg = model.segment(image, list(refs), modality=modality)
    prefix = "missed, " if missed else ""
    for concept, ref in refs.items():
        current = emptied(seg, concept) if missed else seg
        if not missed:
            rows.append({"concept": concept, "setting": "auto", "clicks": 0, "dice": _dice(current[concept], ref)})
        with text_blind() if missed else contextlib.nullcontext():
            for k in range(1, max(CLICKS) + 1):
                click = error_click(current[concept], ref)
                if click is not None:
                    xyz = _world(affine, click)
                    t0 = time.perf_counter()
                    current = current.refine(concept, add=[xyz] if click[3] else [],
                                             remove=[] if click[3] else [xyz])
                    seconds = time.perf_counter() - t0
                else:
                    seconds = 0.0
                if k in CLICKS:
                    rows.append({"concept": concept, "setting": f"{prefix}{k} click{'s' * (k > 1)}", "clicks": k,
                                 "dice": _dice(current[concept], ref), "seconds": seconds})
    return rows


def box_rows(model, image: str, refs: dict[str, np.ndarray], affine: np.ndarray, modality: str, *,
             loose_mm: float = LOOSE_MM) -> list[dict]:
    """Dice of each box target from its reference box alone, from a box ``loose_mm`` larger on
    every side alone, and from the reference box with its text."""
    boxes = {c: _box_world(affine, refs[c]) for c in BOX_TARGETS if c in refs and refs[c].any()}
    rows = []
    for setting, grow in (("box alone", 0.0), ("loose box alone", loose_mm)):
        given = {c: (*(v - grow for v in b[:3]), *(v + grow for v in b[3:])) for c, b in boxes.items()}
        alone = model.segment(image, points=None, box=given, modality=modality)
        read = {lab.prompt: lab.concept for lab in alone.labels.values()}
        rows += [{"concept": c, "setting": setting, "dice": _dice(alone[c], refs[c]), "read_as": read.get(c)}
                 for c in boxes]
    for c, b in boxes.items():
        with_text = model.segment(image, c, box=b, modality=modality)
        rows.append({"concept": c, "setting": "text + box", "dice": _dice(with_text[c], refs[c])})
    return rows


def zoom_rows(model, image: str, refs: dict[str, np.ndarray], modality: str) -> list[dict]:
    """Dice and seconds of the zoom targets without and with zoom-in (same process, same call otherwise);
    then, as if the 3 mm pass had found each structure's place, the Dice inside the regions the
    references give (each reference's box and zoom-in's margin) of the 3 mm mask (``coarse,
    reference regions``) and of zoom-in (``zoom, reference regions``)."""
    from sat import io
    from sat.interactive.zoom import zoom_in
    from sat.segmentation import Segmentation

    targets = [c for c in ZOOM_TARGETS if c in refs]
    rows, coarse = [], None
    for setting, zoom in (("coarse", False), ("zoom", True)):
        t0 = time.perf_counter()
        seg = model.segment(image, targets, modality=modality, zoom=zoom)
        seconds = time.perf_counter() - t0
        rows += [{"concept": c, "setting": setting, "dice": _dice(seg[c], refs[c]), "seconds": seconds}
                 for c in targets]
        if coarse is None:
            coarse = seg
    placed = Segmentation({c: refs[c] for c in targets}, coarse.affine, modality=coarse.modality, meta=coarse.meta,
                          labels=[coarse.labels[v] for v in sorted(coarse.labels)])
    fine = zoom_in(model, io.load(image, modality=modality), placed, coarse._session)
    for c in targets:
        inside = np.zeros(refs[c].shape, bool)
        inside[tuple(slice(*r) for r in fine.meta["zoom"]["regions"][c])] = True
        rows += [{"concept": c, "setting": "coarse, reference regions", "dice": _dice(coarse[c] & inside, refs[c])},
                 {"concept": c, "setting": "zoom, reference regions", "dice": _dice(fine[c], refs[c])}]
    return rows


def run(model_name: str, datasets: list[str], *, split: str = "test",
        parts: tuple[str, ...] = ("clicks", "box", "zoom"), loose_mm: float = LOOSE_MM) -> pd.DataFrame:
    import sat
    from sat.data.cards import load_card

    model = sat.load_model(model_name, device="cpu")
    data = shared_root() / "data"
    rows = []
    for dataset in datasets:
        c = load_card(card(dataset))
        concept_of = c.concept_of()
        for case, image, label in card_cases(dataset, split):
            lab = nib.load(data / label)
            values = np.asarray(lab.dataobj)
            refs = {concept: values == v for v, concept in concept_of.items()}
            organs = {k: refs[k] for k in TARGETS[dataset] if refs[k].any()}
            found = []
            if "clicks" in parts:
                found += click_rows(model, str(data / image), organs, lab.affine, c.modality)
            if "missed" in parts:
                found += click_rows(model, str(data / image), organs, lab.affine, c.modality, missed=True)
            if "box" in parts:
                found += box_rows(model, str(data / image), organs, lab.affine, c.modality, loose_mm=loose_mm)
            if "zoom" in parts and dataset == "btcv_abdomen_24":
                found += zoom_rows(model, str(data / image), {k: refs[k] for k in ZOOM_TARGETS}, c.modality)
            for row in found:
                rows.append({"dataset": dataset, "case": case, "split": "validation" if split == "test" else split,
                             "method": row["setting"], **row})
            logging.info("%s %s done", dataset, case)
    return pd.DataFrame(rows)


def summarise(df: pd.DataFrame) -> pd.DataFrame:
    """Mean over people (per person: mean over the setting's organs), 95 % interval over people."""
    from sat.evaluation.report import over_people

    targets_of = {"auto": TARGETS, **{f"{p}{k} click{'s' * (k > 1)}": TARGETS for k in CLICKS for p in ("", "missed, ")},
                  "box alone": {d: BOX_TARGETS for d in TARGETS},
                  "loose box alone": {d: BOX_TARGETS for d in TARGETS}, "text + box": {d: BOX_TARGETS for d in TARGETS},
                  **{k: {d: ZOOM_TARGETS for d in TARGETS} for k in ("coarse", "zoom", "coarse, reference regions",
                                                                 "zoom, reference regions")}}
    parts = []
    for setting, targets in targets_of.items():
        rows = df[df["method"] == setting]
        if len(rows):
            parts.append(over_people(rows, targets, metrics=("dice",)))
    out = pd.concat(parts, ignore_index=True)
    if "seconds" not in df.columns:
        return out
    seconds = df.groupby(["dataset", "method"])["seconds"].mean().rename("seconds_mean").reset_index()
    return out.merge(seconds, on=["dataset", "method"], how="left")


def plot(df: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if "clicks" not in df.columns:
        return
    clicks = df[df["clicks"].notna() & ~df["method"].str.startswith("missed")]
    if clicks.empty:
        return
    fig, axes = plt.subplots(1, clicks["dataset"].nunique(), figsize=(6 * clicks["dataset"].nunique(), 4),
                             squeeze=False)
    for ax, (dataset, part) in zip(axes[0], clicks.groupby("dataset"), strict=True):
        for concept, rows in part.groupby("concept"):
            mean = rows.groupby("clicks")["dice"].mean()
            ax.plot(mean.index, mean.values, marker="o", label=concept, alpha=0.7)
        mean = part.groupby(["case", "clicks"])["dice"].mean().groupby("clicks").mean()
        ax.plot(mean.index, mean.values, marker="s", color="black", linewidth=2.5, label="mean")
        ax.set(title=f"{dataset}: Dice after corrective clicks", xlabel="clicks", ylabel="Dice", ylim=(0, 1),
               xticks=[0, *CLICKS])
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    from sat.evaluation.report import to_markdown

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="sat-tiny", help="shipped model name or folder (with a prompt head)")
    parser.add_argument("--datasets", nargs="+", default=["btcv_abdomen_24", "chaos_t2_16"])
    parser.add_argument("--split", default="test", choices=["test", "val"],
                        help="the cards' split: test = the validation people (reported), val = development people")
    parser.add_argument("--out", default=str(RESULTS), help="results folder")
    parser.add_argument("--parts", nargs="+", default=["clicks", "box", "zoom"], choices=["clicks", "box", "zoom", "missed"])
    parser.add_argument("--loose-mm", type=float, default=LOOSE_MM,
                        help="part box: how much larger on every side the loose box is (mm)")
    parser.add_argument("--from-csv", nargs="+", metavar="CSV",
                        help="only summarise and plot these per-case tables (e.g. datasets run in parallel)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.from_csv:
        df = pd.concat([pd.read_csv(p) for p in args.from_csv], ignore_index=True)
    else:
        df = run(args.model, args.datasets, split=args.split, parts=tuple(args.parts), loose_mm=args.loose_mm)
    df.to_csv(out / "interactive_per_case.csv", index=False)
    summary = summarise(df)
    summary.to_csv(out / "interactive_summary.csv", index=False)
    (out / "interactive_summary.md").write_text(to_markdown(summary), encoding="utf-8")
    plot(df, out / "interactive_clicks.png")
    print(to_markdown(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
