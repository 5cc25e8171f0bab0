"""Connected-component clean-up of predicted masks, with the rule learnt from the training labels.

nnU-Net keeps only the largest connected component of a class when that does not lower the
class's cross-validation Dice. A model trained on a handful of cases has no cross-validation,
so SAT reads the rule off the references instead: a concept is *single* when its label is one
connected piece (26-connectivity, in model space) in every training case that contains it.
At inference the mask of a single concept keeps only its largest component; the voxels
dropped go to the next most probable prompt above the threshold, or to the background. The
list is stored in the model's ``config.json`` as ``{"postprocess": {"largest_component":
[...]}}``; :meth:`sat.api.Segmenter.segment` applies it unless ``largest_component=False``
(``sat segment --keep-all-components``).

Training writes the list when it exports (:class:`sat.training.callbacks.ExportOnEnd`); for an
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

__all__ = ["components", "largest_component", "single_component_concepts", "postprocess_config", "learn"]

_FULL = np.ones((3, 3, 3), dtype=bool)  # 26-connectivity


def components(mask: np.ndarray) -> int:
    """Number of 26-connected components of a 3D bool mask."""
    from scipy import ndimage

    return int(ndimage.label(mask, structure=_FULL)[1])


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 26-connected component of a 3D bool mask ``[X, Y, Z]`` (same shape; ties: the first).

    Labels only the mask's bounding box (most masks fill a small part of the volume).
    """
    from scipy import ndimage

    mask = np.asarray(mask, dtype=bool)
    spans = [np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis))) for axis in range(3)]
    if spans[0].size == 0:
        return mask
    box = tuple(slice(int(s[0]), int(s[-1]) + 1) for s in spans)
    labels, n = ndimage.label(mask[box], structure=_FULL)
    if n <= 1:
        return mask
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    out = np.zeros_like(mask)
    out[box] = labels == int(sizes.argmax())
    return out


def single_component_concepts(cases: Iterable[Any], concepts: Sequence[str] | None = None) -> list[str]:
    """Concepts that are one connected piece in every case that contains them (sorted).

    Args:
        cases: cached training cases (:class:`sat.data.sampling.Case`: ``label`` ``[X, Y, Z]`` in model
            space and ``values``: concept -> its label values).
        concepts: restrict to these concept ids (default: every concept of the cases).
    """
    seen: dict[str, bool] = {}
    wanted = set(concepts) if concepts is not None else None
    for case in cases:
        for concept, values in case.values.items():
            if wanted is not None and concept not in wanted:
                continue
            mask = np.isin(case.label, list(values))
            if mask.any():
                seen[concept] = seen.get(concept, True) and components(mask) == 1
    return sorted(c for c, single in seen.items() if single)


def postprocess_config(cases: Iterable[Any], concepts: Sequence[str]) -> dict[str, list[str]]:
    """The ``config.json`` entry ``postprocess`` of a model trained on ``cases`` to segment ``concepts``."""
    return {"largest_component": single_component_concepts(cases, concepts)}


def learn(model: str | Path, cache: str | Path, *, datasets: Sequence[str] | None = None) -> list[str]:
    """Write ``postprocess.largest_component`` into a model folder's ``config.json``; returns the list.

    The model's ``concepts`` that are single in the cache's training cases (of ``datasets``, default
    all) are listed; ``config.json`` is rewritten atomically.
    """
    from sat.data.module import load_cases

    path = Path(model) / "config.json"
    if not path.is_file():
        raise InputError(f"{path} does not exist; give a model folder (model.safetensors + config.json)")
    config = json.loads(path.read_text(encoding="utf-8"))
    cases = load_cases(cache, split="train", datasets=datasets)
    if not cases:
        raise InputError(f"no training cases in {cache} for datasets={list(datasets or [])}; check --dataset")
    config["postprocess"] = postprocess_config(cases, config.get("concepts") or [])
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
    print(f"largest component kept for: {', '.join(single) or 'none'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
