"""A segmentation written as a result folder: labelmap, one mask per prompt, labels.json (+ overlay,
probabilities), all on the input grid, moved into place only when complete.

Example:
    >>> seg.save("out/")                     # doctest: +SKIP   (calls save_result)
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from sat._atomic import default_mode
from sat.errors import InputError

log = logging.getLogger(__name__)

__all__ = ["LABELMAP_NAME", "LABELS_NAME", "OVERLAY_NAME", "PROBABILITIES_DIR", "save_result"]

LABELMAP_NAME = "labelmap.nii.gz"
LABELS_NAME = "labels.json"
OVERLAY_NAME = "overlay.png"
PROBABILITIES_DIR = "probabilities"
_RESERVED = {"labelmap", "labels", "overlay"}


def save_result(seg, directory: str | os.PathLike, *, overlay: bool = False, probabilities: bool = False) -> Path:
    """Write ``seg`` (a :class:`~sat.segmentation.Segmentation`) into ``directory``
    (rules: :meth:`Segmentation.save <sat.segmentation.Segmentation.save>`); returns the folder."""
    from sat.io import save as save_nifti
    from sat.io import write_nifti

    out = Path(directory).expanduser()
    if out.exists() and not out.is_dir():
        raise InputError(f"output {out} exists and is a file; give a folder path for the results")
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.part-", dir=out if out.is_dir() else out.parent))
    os.chmod(stage, default_mode(directory=True))  # mkdtemp gives 0700; the folder may become ``out``
    try:
        files = _file_names(seg)
        save_nifti(seg.labelmap, stage / LABELMAP_NAME, affine=seg.affine)  # checks the affine once
        with ThreadPoolExecutor(max_workers=min(2, os.cpu_count() or 1)) as pool:  # gzip releases the GIL
            done = [pool.submit(lambda p, n: write_nifti(seg[p].view(np.uint8), stage / n, seg.affine),
                                prompt, name) for prompt, name in files.items()]
            for future in done:
                future.result()
        written = [LABELMAP_NAME, *files.values()]
        if overlay:
            seg.overlay_png(stage / OVERLAY_NAME)
            written.append(OVERLAY_NAME)
        if probabilities:
            written += _save_probabilities(seg, stage, files)
        (stage / LABELS_NAME).write_text(json.dumps(_labels_json(seg, files, overlay), indent=2) + "\n",
                                         encoding="utf-8")
        _move_into(stage, out, written)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    log.debug("wrote %d masks, %s and %s to %s", len(files), LABELMAP_NAME, LABELS_NAME, out)
    return out


def _save_probabilities(seg, stage: Path, files: dict[str, str]) -> list[str]:
    from sat.io import save as save_nifti

    if not len(seg.probabilities):
        raise InputError("no probabilities to save; segment with probabilities=True first")
    (stage / PROBABILITIES_DIR).mkdir()
    names = [f"{PROBABILITIES_DIR}/{files[p]}" for p in seg.prompts]
    for prompt, name in zip(seg.prompts, names, strict=True):
        save_nifti(np.asarray(seg.probabilities[prompt], dtype=np.float32), stage / name, affine=seg.affine)
    return names


def _file_names(seg) -> dict[str, str]:
    names: dict[str, str] = {}
    used: set[str] = set()
    for lab in seg.labels.values():
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", lab.prompt).strip("._-")[:100] or f"label_{lab.value}"
        if stem.lower() in _RESERVED or stem.lower() in used:
            stem = f"{stem}_{lab.value}"
        used.add(stem.lower())
        names[lab.prompt] = f"{stem}.nii.gz"
    return names


def _labels_json(seg, files: dict[str, str], overlay: bool = False) -> dict[str, Any]:
    return {
        "format_version": 1,
        "labelmap": LABELMAP_NAME,
        **({"overlay": OVERLAY_NAME} if overlay else {}),
        "shape": list(seg.shape),
        "affine": seg.affine.tolist(),
        "modality": seg.modality,
        **{k: v for k, v in seg.meta.items() if k not in ("labels", "format_version")},
        "labels": [{**row, "file": files[row["prompt"]]} for row in seg.label_rows()],
    }


def _previous_outputs(out: Path) -> set[str]:
    """Files an earlier result in ``out`` lists in its labels.json (plain names inside ``out`` only)."""
    try:
        old = json.loads((out / LABELS_NAME).read_text(encoding="utf-8"))
        names = {old.get("labelmap"), old.get("overlay"), *(lab.get("file") for lab in old.get("labels", []))}
    except (OSError, ValueError, AttributeError, TypeError):
        return set()
    return {n for n in names if isinstance(n, str) and n and Path(n).name == n and n not in (".", "..")}


def _move_into(stage: Path, out: Path, names: list[str]) -> None:
    """Move finished files from ``stage`` to ``out``, labels.json last (a rename of the whole folder when new).

    An earlier result in ``out`` is replaced: its labels.json is removed first, then the files it
    lists that are not rewritten, so no stale mask stays beside the new labels.json.
    """
    if not out.exists():
        try:
            os.rename(stage, out)
            stage.mkdir()  # recreated empty so the caller's cleanup is uniform
            return
        except OSError:
            out.mkdir(parents=True, exist_ok=True)
    stale = _previous_outputs(out) - set(names) - {LABELS_NAME}
    (out / LABELS_NAME).unlink(missing_ok=True)
    for name in names:
        (out / name).parent.mkdir(exist_ok=True)
        os.replace(stage / name, out / name)
    for name in sorted(stale):
        (out / name).unlink(missing_ok=True)
    os.replace(stage / LABELS_NAME, out / LABELS_NAME)
