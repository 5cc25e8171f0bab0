"""Dice per structure of a trained model on whole cases, on each case's original voxel grid.

The model segments the original image through the public API (standardize -> sliding
window -> invert), and the prediction is compared with the case's reference label
resampled onto the image grid in physical space (as the dataset converters read it).

Run (numbers of the model card)::

    sat evaluate model --model sat/resources/models/sat-tiny \\
        datasets/totalseg_abdomen.yaml datasets/totalseg_upper_abdomen_dicom.yaml

Example:
    >>> from sat.evaluation.model_report import evaluate_model
    >>> table = evaluate_model("sat/resources/models/sat-tiny", ["datasets/totalseg_abdomen.yaml"])  # doctest: +SKIP
    >>> table.columns.tolist()                                                                          # doctest: +SKIP
    ['dataset', 'case', 'split', 'concept', 'in_reference', 'dice', 'grid_ceiling', 'reference_voxels', 'predicted_voxels']
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from sat._defaults import PRESENCE_VETO
from sat.data.cards import DatasetCard, load_card
from sat.evaluation.metrics import dice

__all__ = ["evaluate_model", "grid_ceiling", "render_report"]

log = logging.getLogger(__name__)

# The structures of the acceptance target on the held-out upper-abdomen subject.
TARGET_CONCEPTS = ("liver", "spleen", "stomach", "aorta", "inferior_vena_cava", "vertebrae_t11", "vertebrae_t12",
                   "spinal_cord")


COLUMNS = ["dataset", "case", "split", "concept", "in_reference", "dice", "grid_ceiling", "reference_voxels",
           "predicted_voxels"]


def grid_ceiling(mask: np.ndarray, affine: np.ndarray, spacing: Sequence[float]) -> float:
    """Dice an ideal model could reach at ``spacing``: the mask's voxel occupancy resampled into
    model space and back (linear both ways, as predictions are), thresholded at 0.5."""
    import sat.io
    from sat.preprocess import invert, standardize

    # any modality: with normalize=False it only keeps sat.io from guessing one from intensities
    volume = sat.io.load((mask.astype(np.float32), affine), modality="mr")
    occupancy, record = standardize(volume, spacing=spacing, normalize=False)
    return dice(invert(occupancy[0], record, mode="linear") >= 0.5, mask)


def evaluate_model(
    model: str | Path,
    cards: Sequence[str | Path | DatasetCard],
    *,
    shared: str | Path | None = None,
    roots: dict[str, str | Path] | None = None,
    concepts: Sequence[str] | None = None,
    splits: Sequence[str] | None = None,
    overlap: float | None = None,
    presence_gating: bool = True,
    presence_veto: float = PRESENCE_VETO,
    largest_component: bool = True,
) -> pd.DataFrame:
    """One row per (case, concept trained by the model and labelled by the case's dataset).

    Structures the dataset labels but the case does not contain (``in_reference`` False) have
    Dice 1 when their mask is empty and 0 otherwise; ``predicted_voxels`` counts their false
    positives.

    ``grid_ceiling`` is the Dice of the reference itself passed through the model's voxel grid
    and back (:func:`grid_ceiling`): what resolution alone allows.

    Args:
        model: shipped model name or folder (see :func:`sat.load_model`).
        cards: dataset cards (paths or loaded) whose cases are evaluated (their ``root`` is under ``shared``).
        shared: folder the cards' relative roots point into (default: ``../shared``).
        roots: dataset name -> its folder, for cards without a root under ``shared``.
        concepts: restrict to these concept ids.
        splits: only the cases of these splits (e.g. ``["val"]``: the development people).
        overlap: sliding-window overlap (None: the model's default).
        presence_gating, presence_veto, largest_component: passed to :meth:`sat.api.Segmenter.segment`.
    """
    import sat
    from sat.data.cli import default_shared
    from sat.data.converters import find_cases, load_case

    segmenter = sat.load_model(model, device="cpu")
    trained = set(segmenter.concepts)
    shared = Path(shared) if shared is not None else default_shared()
    roots = roots or {}
    rows = []
    for card in cards:
        card = card if isinstance(card, DatasetCard) else load_card(card)
        value_of = {spec.concept: v for v, spec in card.labels.items() if spec.concept and spec.skip is None}
        for source in find_cases(card, card.resolve_root(roots.get(card.name), shared=shared)):
            split = card.split_of(source.case, source.split)
            if splits and split not in splits:
                continue
            image, label = load_case(source, modality=card.modality)
            present = {c for c, v in value_of.items() if np.any(label == v)}
            wanted = sorted(set(value_of) & trained & set(concepts or value_of))
            if not wanted:
                continue
            start = time.perf_counter()
            seg = segmenter.segment(image, wanted, modality=card.modality, overlap=overlap,
                                    presence_gating=presence_gating, presence_veto=presence_veto,
                                    largest_component=largest_component)
            log.info("%s/%s: %d structures in %.1f s", card.name, source.case, len(wanted),
                     time.perf_counter() - start)
            for concept in wanted:
                pred, ref = np.asarray(seg[concept], bool), label == value_of[concept]
                rows.append({"dataset": card.name, "case": source.case, "split": split,
                             "concept": concept, "in_reference": concept in present, "dice": dice(pred, ref),
                             "grid_ceiling": grid_ceiling(ref, image.affine, segmenter.spacing)
                             if concept in present else np.nan,
                             "reference_voxels": int(ref.sum()), "predicted_voxels": int(pred.sum())})
    return pd.DataFrame(rows, columns=COLUMNS)


def render_report(table: pd.DataFrame) -> str:
    """Markdown text of :func:`evaluate_model`'s table: per case, the mean Dice (all / target structures),
    a table of the structures in the reference and the false positives of the absent ones."""
    lines = []
    for (dataset, case), rows in table.groupby(["dataset", "case"], sort=False):
        part, absent = rows[rows["in_reference"]], rows[~rows["in_reference"]]
        target = part[part["concept"].isin(TARGET_CONCEPTS)]
        lines.append(f"\n{dataset}/{case} ({rows['split'].iloc[0]}): mean Dice {part['dice'].mean():.3f} over "
                     f"{len(part)} structures; {target['dice'].mean():.3f} over the {len(target)} target structures "
                     f"(grid ceiling {target['grid_ceiling'].mean():.3f})")
        shown = [c for c in COLUMNS[3:] if c != "in_reference"]
        lines.append(part[shown].round(3).to_markdown(index=False)
                     if _has_tabulate() else part.round(3).to_string(index=False))
        if len(absent):
            false = {r.concept: r.predicted_voxels for r in absent.itertuples() if r.predicted_voxels}
            lines.append(f"trained structures absent from the case: {len(absent)}, empty masks: "
                         f"{len(absent) - len(false)}; false-positive voxels: {sum(false.values())} "
                         f"({false or 'none'})")
    return "\n".join(lines)


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True

