"""End-to-end demo: ``python examples/demo.py`` (run by ``make demo``).

``--case held-out`` (the default when ``../shared`` is beside the project) segments two real
people the shipped model never trained on: subject B (the upper-abdomen CT DICOM series of
``datasets/totalseg_upper_abdomen_dicom.yaml``, full-range HU) and the first validation person
of ``datasets/btcv_abdomen_24.yaml`` (a contrast CT in the abdominal window), prints the
volumes and Dice against their reference labels. ``--case phantom`` (the default otherwise)
generates the seeded phantom of ``examples/phantom.py`` and segments a few prompts (organs, a
left/right pair and two parent concepts that are unions of their parts), scored against the
phantom's own labels. Each case writes the image, the segmentation, an overlay PNG and
``summary.csv`` to its folder under ``demo_out/``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

from sat.errors import SATError

PROMPTS = ("liver", "spleen", "left kidney", "right kidney", "kidneys", "aorta", "lumbar vertebrae")
HELD_OUT_PROMPTS = ("liver", "spleen", "stomach", "aorta", "inferior vena cava", "T11 vertebra", "T12 vertebra",
                    "spinal cord")
DATASETS = Path(__file__).resolve().parents[1] / "datasets"
HELD_OUT_CARD = DATASETS / "totalseg_upper_abdomen_dicom.yaml"
VALIDATION_CARD = DATASETS / "btcv_abdomen_24.yaml"
VALIDATION_PROMPTS = ("spleen", "right kidney", "left kidney", "gallbladder", "liver", "stomach", "aorta", "pancreas")


def held_out_available() -> bool:
    """True when the held-out real CT (its card and ``../shared`` data) can be read."""
    from sat.data.cli import default_shared

    return HELD_OUT_CARD.is_file() and (default_shared() / "data").is_dir()


def _score_and_save(seg, reference, out: Path):
    """The segmentation's volume table plus ``reference_ml`` and ``dice`` (``reference``: concept -> mask or
    None); writes the segmentation, the overlay and ``summary.csv`` to ``out``."""
    from sat.evaluation.metrics import dice

    table = seg.volumes_ml()
    ref_ml, scores = [], []
    for lab in seg.labels.values():
        ref = reference(lab.concept)
        ref_ml.append(np.nan if ref is None else round(int(ref.sum()) * seg.voxel_ml, 1))
        scores.append(np.nan if ref is None else round(dice(np.asarray(seg[lab.prompt], bool), ref), 3))
    table["reference_ml"] = ref_ml
    table["dice"] = scores
    seg.save(out / "segmentation")
    seg.overlay_png(out / "overlay.png")
    _write_csv(table, out / "summary.csv")
    return table


def run_held_out(out: Path, *, model: str, prompts: list[str], card_path: Path = HELD_OUT_CARD,
                 case: str | None = None, on_untrained: str = "error"):
    """Segment a real case of a card (default: subject B); returns the summary table (pandas DataFrame)."""
    from sat import api, io
    from sat.data.cards import load_card
    from sat.data.cli import default_shared
    from sat.data.converters import find_cases, load_case

    card = load_card(card_path)
    sources = find_cases(card, card.resolve_root(shared=default_shared()))
    source = next(s for s in sources if case in (None, s.case))
    image, label = load_case(source, modality=card.modality)
    segmenter = api.load_model(model)
    logging.getLogger(__name__).info("model %s on %s/%s %s", segmenter.name, card.name, source.case, image.shape)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    io.save(image, out / "ct.nii.gz")
    seg = segmenter.segment(image, prompts, modality=card.modality, on_untrained=on_untrained,
                            progress=sys.stderr.isatty())
    concept_of = card.concept_of()

    def reference(concept: str | None) -> np.ndarray | None:
        values = [v for v, c in concept_of.items() if c == concept]
        return np.isin(label, values) if values else None

    return _score_and_save(seg, reference, out)


def run(out: Path, *, model: str, prompts: list[str], seed: int = 0, spacing: float = 3.0,
        on_untrained: str = "error"):
    """Run the phantom demo; returns the summary table (pandas DataFrame)."""
    from phantom import make_phantom  # examples/ is on the path when run as a script

    from sat import api, io

    out = Path(out)
    phantom = make_phantom(spacing=(spacing,) * 3, seed=seed)
    segmenter = api.load_model(model)
    logging.getLogger(__name__).info("model %s on a %s phantom (seed %d)", segmenter.name, phantom.image.shape, seed)
    out.mkdir(parents=True, exist_ok=True)
    io.save(phantom.image, out / "phantom_ct.nii.gz")
    io.save(phantom.label, out / "phantom_labels.nii.gz")
    seg = segmenter.segment(phantom.image, prompts, on_untrained=on_untrained, progress=sys.stderr.isatty())
    return _score_and_save(seg, phantom.reference, out)


def _write_csv(table, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.part")
    table.to_csv(tmp, index=False)
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python examples/demo.py", description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", default="demo_out", help="output folder (default: demo_out)")
    parser.add_argument("--model", default=None, help="model name or folder (default: the shipped default)")
    parser.add_argument("-p", "--prompt", action="append", help=f"prompts (default: {', '.join(PROMPTS)})")
    parser.add_argument("--case", choices=("auto", "held-out", "phantom"), default="auto",
                        help="held-out: the real CT the model never trained on (needs ../shared); phantom: a "
                             "procedural CT; auto (default): held-out when available")
    parser.add_argument("--seed", type=int, default=0, help="phantom seed (default 0)")
    parser.add_argument("--on-untrained", choices=("error", "empty", "text"), default="error",
                        help="a prompt the model was not trained on: error (default), empty mask, or free text")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    from sat import api

    model = args.model or api.DEFAULT_MODEL
    held_out = args.case == "held-out" or (args.case == "auto" and held_out_available())
    if args.case == "held-out" and not held_out_available():
        print(f"demo: error: the held-out CT needs {HELD_OUT_CARD.name} and ../shared/data beside the project; "
              "use --case phantom", file=sys.stderr)
        return 1
    out = Path(args.output)
    try:
        if held_out:
            first = _validation_case()
            runs = [("subject B: held-out upper-abdomen CT (DICOM, full-range HU), never trained on", out / "subject_b",
                     lambda o: run_held_out(o, model=model, prompts=list(args.prompt or HELD_OUT_PROMPTS),
                                            on_untrained=args.on_untrained)),
                    (f"validation person {first} (BTCV contrast CT, abdominal window), never trained on",
                     out / first, lambda o: run_held_out(o, model=model, card_path=VALIDATION_CARD, case=first,
                                                         prompts=list(args.prompt or VALIDATION_PROMPTS),
                                                         on_untrained=args.on_untrained))]
        else:
            runs = [(f"CT phantom (seed {args.seed}, 3 mm)", out,
                     lambda o: run(o, model=model, prompts=list(args.prompt or PROMPTS), seed=args.seed,
                                   on_untrained=args.on_untrained))]
        for what, folder, job in runs:
            _report(what, model, job(folder), folder)
    except SATError as err:
        print(f"demo: error: {err}", file=sys.stderr)
        return 1
    return 0


def _validation_case() -> str:
    from sat.data.cards import load_card

    return next(e.id for e in load_card(VALIDATION_CARD).cases if e.split == "test")


def _report(what: str, model: str, table, folder: Path) -> None:
    print(f"SAT demo: model {model}, {what}\n")
    print(table.drop(columns=["name"]).to_string(index=False, na_rep="-"))
    if table["dice"].notna().any():
        print(f"\nmean Dice vs the reference labels: {np.nanmean(table['dice']):.3f}")
    print(f"wrote {folder}/: the image, segmentation/, overlay.png, summary.csv\n")


if __name__ == "__main__":
    sys.exit(main())
