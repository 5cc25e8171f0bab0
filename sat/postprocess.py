"""Connected-component clean-up of predicted masks, with the rule learnt from the training labels.

nnU-Net keeps only the largest connected component of a class when that does not lower the
class's cross-validation Dice. A model trained on a handful of cases has no cross-validation,
so SAT reads the rule off the references instead: a concept keeps one piece when its label is
one connected piece (26-connectivity, in model space) in every training case that contains it.
An input that is a thin slab can cut such a structure into pieces (a vertebra's body and its
spinous process in a 4 cm slab), so the rule also records, per concept, the fewest axial
slices an input needs before it applies (:func:`min_slices`: the references cut into slabs
the way a thin input cuts them). At inference the mask of such a concept keeps only its
largest component; the voxels dropped go to the next most probable prompt above the
threshold, or to the background. The rule is stored in the model's ``config.json`` as
``{"postprocess": {"largest_component": {concept: slices}}}``; :meth:`sat.api.Segmenter.segment`
applies it unless ``largest_component=False`` (``sat segment --keep-all-components``).

Training writes the rule when it exports (:class:`sat.training.callbacks.ExportOnEnd`); for an
existing model folder::

    python -m sat.postprocess --model sat/resources/models/sat-tiny --cache cache/3mm \\
        --dataset totalseg_abdomen --dataset totalseg_abdomen_mr

Example:
    >>> import numpy as np
    >>> m = np.zeros((6, 6, 6), bool); m[:2, :2, :2] = True; m[4:, 4:, 4:] = True; m[5, 5, 5] = False
    >>> int(largest_component(m).sum()), components(m)
    (8, 2)
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sat._atomic import atomic_write_bytes
from sat.errors import InputError

log = logging.getLogger(__name__)

__all__ = ["components", "largest_component", "min_slices", "postprocess_config", "applies", "learn",
           "without_specks"]

_FULL = np.ones((3, 3, 3), dtype=bool)  # 26-connectivity


def components(mask: np.ndarray) -> int:
    """Number of 26-connected components of a 3D bool mask."""
    from scipy import ndimage

    return int(ndimage.label(mask, structure=_FULL)[1])


def bounding_box(mask: np.ndarray) -> tuple[slice, ...] | None:
    """Bounding box ``(slice, slice, slice)`` of a 3D bool mask (None when empty): the one used
    everywhere (crops, zoom-in regions, simulated boxes)."""
    spans = [np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis))) for axis in range(3)]
    return None if spans[0].size == 0 else tuple(slice(int(s[0]), int(s[-1]) + 1) for s in spans)


def _select(mask: np.ndarray, choose) -> np.ndarray:
    """``mask`` (bool ``[X, Y, Z]``) with the 26-connected components ``choose(labels, n, box)`` keeps: it
    gets the labels of the mask's bounding box ``box`` (most masks fill a small part of the volume)
    and returns the kept voxels of that box, or None to keep the mask as it is."""
    from scipy import ndimage

    mask = np.asarray(mask, dtype=bool)
    box = bounding_box(mask)
    if box is None:
        return mask
    labels, n = ndimage.label(mask[box], structure=_FULL)
    kept = choose(labels, n, box)
    if kept is None:
        return mask
    out = np.zeros_like(mask)
    out[box] = kept
    return out


def _largest_label(labels: np.ndarray) -> int:
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return int(sizes.argmax())


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 26-connected component of a 3D bool mask ``[X, Y, Z]`` (same shape; ties: the first)."""
    return _select(mask, lambda labels, n, box: None if n <= 1 else labels == _largest_label(labels))


def without_specks(mask: np.ndarray, share: float) -> np.ndarray:
    """A bool mask ``[X, Y, Z]`` without its 26-connected components smaller than ``share`` of its
    voxels (same shape)."""

    def choose(labels, n, box):
        if n <= 1:
            return None
        sizes = np.bincount(labels.ravel())
        keep = sizes >= share * sizes[1:].sum()
        keep[0] = False
        return keep[labels]

    return _select(mask, choose)


def keep_components(mask: np.ndarray, seeds: Sequence[Sequence[int]], *, largest: bool) -> np.ndarray:
    """The 26-connected components of a bool mask ``[X, Y, Z]`` that hold a seed voxel ``(x, y, z)``,
    plus the largest component with ``largest`` (same shape)."""

    def choose(labels, n, box):
        keep = set()
        for seed in seeds:
            local = tuple(int(v) - s.start for v, s in zip(seed, box, strict=True))
            if all(0 <= v < s.stop - s.start for v, s in zip(local, box, strict=True)) and labels[local]:
                keep.add(int(labels[local]))
        if largest and n:
            keep.add(_largest_label(labels))
        return np.isin(labels, sorted(keep)) if keep else False

    return _select(mask, choose)


def min_slices(mask: np.ndarray, window: int) -> int | None:
    """Fewest axial slices an input needs for this reference structure to stay one piece in it.

    Args:
        mask: ``[X, Y, Z]`` bool reference of one structure in model space (z = axis 2).
        window: the model's window depth in slices; inputs at least this thick are judged by the
            whole reference.

    Returns:
        None when the reference itself is not one piece; otherwise the smallest ``t <= window``
        such that for every input depth ``t' in [t, window]`` each slab of ``t'`` slices through
        the structure, and each end piece it leaves when an input edge cuts the structure, is one
        piece (``window + 1`` when even ``window`` slices can split it: only thicker inputs qualify).
    """
    mask = np.asarray(mask, dtype=bool)
    box = bounding_box(mask)
    if box is None:
        return None
    crop = mask[box]
    if components(crop) != 1:
        return None
    n = crop.shape[2]

    def one_piece(a: int, b: int) -> bool:
        return components(crop[:, :, a:b]) == 1

    ends_ok = [True]  # ends_ok[k]: every end piece of at most k slices (from the top or the bottom) is one piece
    for k in range(1, min(window, n)):
        ends_ok.append(ends_ok[-1] and one_piece(0, k) and one_piece(n - k, n))
    needed = window + 1
    for t in range(window, 0, -1):
        inner = t >= n or all(one_piece(z, z + t) for z in range(n - t + 1))
        if not (inner and ends_ok[min(t, n) - 1]):
            break
        needed = t
    return needed


def postprocess_config(cases: Iterable[Any], concepts: Sequence[str], *, window: int) -> dict[str, dict[str, int]]:
    """The ``config.json`` entry ``postprocess`` of a model trained on ``cases`` to segment ``concepts``.

    ``{"largest_component": {concept: slices}}``: the concepts that are one piece in every training
    case that contains them, each with the fewest axial slices (model space) an input must have
    for the rule to apply, the largest :func:`min_slices` over those cases.

    Args:
        cases: cached training cases (:class:`sat.data.sampling.Case`: ``label`` ``[X, Y, Z]`` in model
            space and ``values``: concept -> its label values).
        concepts: the concept ids the model segments.
        window: the model's window depth in slices (``patch_size[2]``).
    """
    needed: dict[str, int | None] = {}
    wanted = set(concepts)
    for case in cases:
        for concept, values in case.values.items():
            if concept not in wanted or needed.get(concept, 0) is None:
                continue
            mask = np.isin(case.label, list(values))
            if mask.any():
                t = min_slices(mask, window)
                needed[concept] = None if t is None else max(t, needed.get(concept) or 0)
    return {"largest_component": {c: t for c, t in sorted(needed.items()) if t is not None}}


def applies(rule: dict[str, Any] | None, concept: str | None, slices: int) -> bool:
    """Whether a model's ``postprocess`` rule keeps one piece of ``concept`` in an input of ``slices`` axial slices."""
    needed = (rule or {}).get("largest_component", {}).get(concept) if concept else None
    return needed is not None and slices >= needed


def learn(model: str | Path, cache: str | Path, *, datasets: Sequence[str] | None = None) -> dict[str, int]:
    """Write ``postprocess`` (:func:`postprocess_config`) into a model folder's ``config.json``; returns the rule.

    Learnt from the cache's training cases (of ``datasets``, default all); ``config.json`` is
    rewritten atomically.
    """
    from sat.data.module import load_cases

    path = Path(model) / "config.json"
    if not path.is_file():
        raise InputError(f"{path} does not exist; give a model folder (model.safetensors + config.json)")
    config = json.loads(path.read_text(encoding="utf-8"))
    cases = load_cases(cache, split="train", datasets=datasets)
    if not cases:
        raise InputError(f"no training cases in {cache} for datasets={list(datasets or [])}; check --dataset")
    window = int(config.get("model", {}).get("patch_size", [0, 0, 32])[2])
    config["postprocess"] = postprocess_config(cases, config.get("concepts") or [], window=window)
    single = config["postprocess"]["largest_component"]
    atomic_write_bytes(path, (json.dumps(config, indent=2) + "\n").encode())
    log.info("%s: largest component kept for %d of %d concepts", path, len(single), len(config.get("concepts", [])))
    return single


def main(argv: Sequence[str] | None = None) -> int:
    """Command line of :func:`learn`."""
    parser = argparse.ArgumentParser(prog="python -m sat.postprocess", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="model folder whose config.json is updated")
    parser.add_argument("--cache", required=True, help="the standardized cache the model was trained on")
    parser.add_argument("--dataset", action="append", default=None, metavar="NAME",
                        help="a dataset the model was trained on (repeatable; default: every training case)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    single = learn(args.model, args.cache, datasets=args.dataset)
    log.info("largest component kept for (fewest axial slices of the input): %s",
             ", ".join(f"{c} ({t})" for c, t in single.items()) or "none")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
