"""End-to-end demo: ``python -m sat.demo`` (run by ``make demo``).

``--case held-out`` (the default when ``../shared`` is beside the project) reads the real
upper-abdomen CT DICOM series that the shipped model never trained on (subject B of
``datasets/totalseg_upper_abdomen_dicom.yaml``), segments eight structures from text and
prints their volumes and Dice against its reference labels. ``--case phantom`` (the default
otherwise) generates the seeded phantom of :mod:`sat.data.phantom` and segments a few prompts
(organs, a left/right pair and two parent concepts that are unions of their parts), scored
against the phantom's own labels. Both write the image, the segmentation, an overlay PNG and
``summary.csv`` to ``demo_out/``.
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
HELD_OUT_CARD = Path(__file__).resolve().parents[1] / "datasets" / "totalseg_upper_abdomen_dicom.yaml"


def held_out_available() -> bool:
    """True when the held-out real CT (its card and ``../shared`` data) can be read."""
    from sat.data.cli import default_shared

    return HELD_OUT_CARD.is_file() and (default_shared() / "data").is_dir()


def reference_mask(phantom, concept_id: str | None) -> np.ndarray | None:
    """The phantom's labels for a concept and its descendants (None when the phantom has none)."""
    if concept_id is None:
        return None
    from sat import knowledge

    tree = knowledge.load()
    wanted = {concept_id}
    if concept_id in tree:
        wanted |= {getattr(d, "id", d) for d in tree.descendants(tree[concept_id])}
    if not wanted & set(phantom.concepts.values()):
        return None
    return phantom.mask(wanted)


def dice(pred: np.ndarray, ref: np.ndarray) -> float:
    """Dice coefficient of two bool masks (nan when both are empty)."""
    total = int(pred.sum()) + int(ref.sum())
    return float("nan") if total == 0 else 2.0 * int(np.logical_and(pred, ref).sum()) / total


def _score_and_save(seg, reference, out: Path):
    """The segmentation's volume table plus ``reference_ml`` and ``dice`` (``reference``: concept -> mask or
    None); writes the segmentation, the overlay and ``summary.csv`` to ``out``."""
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


def run_held_out(out: Path, *, model: str, prompts: list[str], on_untrained: str = "error"):
    """Segment the held-out real CT (subject B, DICOM); returns the summary table (pandas DataFrame)."""
    from sat import api, io
    from sat.data.cards import load_card
    from sat.data.cli import default_shared
    from sat.data.converters import find_cases, load_case

    card = load_card(HELD_OUT_CARD)
    source = next(iter(find_cases(card, card.resolve_root(shared=default_shared()))))
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
    from sat import api, io
    from sat.data.phantom import make_phantom

    out = Path(out)
    phantom = make_phantom(spacing=(spacing,) * 3, seed=seed)
    segmenter = api.load_model(model)
    logging.getLogger(__name__).info("model %s on a %s phantom (seed %d)", segmenter.name, phantom.image.shape, seed)
    out.mkdir(parents=True, exist_ok=True)
    io.save(phantom.image, out / "phantom_ct.nii.gz")
    io.save(phantom.label, out / "phantom_labels.nii.gz")
    seg = segmenter.segment(phantom.image, prompts, on_untrained=on_untrained, progress=sys.stderr.isatty())
    return _score_and_save(seg, lambda concept: reference_mask(phantom, concept), out)


def _write_csv(table, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.part")
    table.to_csv(tmp, index=False)
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sat.demo", description=__doc__.splitlines()[0])
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
        print(f"sat.demo: error: the held-out CT needs {HELD_OUT_CARD.name} and ../shared/data beside the project; "
              "use --case phantom", file=sys.stderr)
        return 1
    try:
        if held_out:
            table = run_held_out(Path(args.output), model=model, prompts=list(args.prompt or HELD_OUT_PROMPTS),
                                 on_untrained=args.on_untrained)
        else:
            table = run(Path(args.output), model=model, prompts=list(args.prompt or PROMPTS), seed=args.seed,
                        on_untrained=args.on_untrained)
    except SATError as err:
        print(f"sat.demo: error: {err}", file=sys.stderr)
        return 1
    what = ("held-out real CT (upper-abdomen DICOM series, never trained on)" if held_out
            else f"CT phantom (seed {args.seed}, 3 mm)")
    print(f"SAT demo: model {model}, {what}\n")
    print(table.drop(columns=["name"]).to_string(index=False, na_rep="-"))
    if table["dice"].notna().any():
        print(f"\nmean Dice vs {'its reference labels' if held_out else 'phantom labels'}: "
              f"{np.nanmean(table['dice']):.3f}")
    files = "ct.nii.gz" if held_out else "phantom_ct.nii.gz, phantom_labels.nii.gz"
    print(f"wrote {args.output}/: {files}, segmentation/, overlay.png, summary.csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
