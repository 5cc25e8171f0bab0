"""Label maps from any tool: value -> name mappings, concepts, case files, grid alignment.

A prediction or reference is a label map (integer NIfTI/MGZ/NRRD) plus a mapping
``label value -> name``. Names are resolved to knowledge-tree concepts, so a
nnU-Net prediction labelled ``{"1": "spleen"}``, a TotalSegmentator output and a
SAT ``labels.json`` are all compared by concept id.

Example:
    >>> read_mapping({"1": "liver", 2: {"concept": "spleen"}})
    {1: 'liver', 2: 'spleen'}
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sat.errors import ConfigError, InputError, UnknownTermError

log = logging.getLogger(__name__)

LABEL_SUFFIXES = (".nii.gz", ".nii", ".mgz", ".nrrd", ".nhdr", ".mha", ".mhd")
LABELMAP_NAMES = ("labelmap", "segmentations", "seg", "label", "labels")  # one-file outputs inside a case folder
MAPPING_NAMES = ("labels.json", "dataset.json")

__all__ = [
    "ClassInfo", "LabelImage", "align_to", "case_id", "find_cases", "read_case", "read_mapping", "resolve_classes",
]


@dataclass(frozen=True)
class ClassInfo:
    """One evaluated class: knowledge-tree concept id, label name, body region and kind ("organ"|"lesion")."""

    concept: str
    name: str
    region: str
    kind: str


@dataclass
class LabelImage:
    """Integer label map [X, Y, Z] with its affine and ``concept id -> label values``."""

    array: np.ndarray
    affine: np.ndarray
    values: dict[str, tuple[int, ...]] = field(default_factory=dict)

    def mask(self, concept: str) -> np.ndarray | None:
        """Boolean mask of ``concept``; None when this label map does not cover the concept."""
        vals = self.values.get(concept)
        if vals is None:
            return None
        return np.isin(self.array, vals) if len(vals) > 1 else self.array == vals[0]


def _entry_name(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        for key in ("concept", "concept_id", "name", "prompt"):
            if isinstance(value.get(key), str):
                return value[key]
    for key in ("concept", "concept_id", "name"):
        if isinstance(getattr(value, key, None), str):
            return getattr(value, key)
    raise ConfigError(f"label mapping entry {value!r} has no name; use 'value: name' or give a 'concept' key")


def _from_object(obj: Any, where: str) -> dict[int, str]:
    if isinstance(obj, Mapping) and "labels" in obj:
        return _from_object(obj["labels"], where)
    if isinstance(obj, list):  # [{"value": 1, "name": "liver"}, ...]
        try:
            return {int(item["value"]): _entry_name(item) for item in obj}
        except (KeyError, TypeError, ValueError) as err:
            raise ConfigError(f"{where}: list entries need 'value' and 'name'/'concept' keys ({err})") from None
    if not isinstance(obj, Mapping) or not obj:
        raise ConfigError(f"{where}: expected a 'label value -> name' mapping")
    out: dict[int, str] = {}
    for key, value in obj.items():
        try:
            number = int(key)
        except (TypeError, ValueError):
            # not digits: either a name -> value mapping (nnU-Net dataset.json) or a container
            if isinstance(value, int) and not isinstance(value, bool):
                out[value] = str(key)
                continue
            raise ConfigError(f"{where}: key {key!r} is not a label value; pick a sub-mapping with FILE:KEY") from None
        if number != 0:
            out[number] = _entry_name(value)
    out.pop(0, None)
    if not out:
        raise ConfigError(f"{where}: the label mapping has no foreground value")
    return out


def _from_card(path: Path) -> dict[int, str]:
    from sat.data.cards import load_card

    card = load_card(path)
    mapping = card.concept_of()  # value -> concept id, skipped and unmapped labels left out
    if not mapping:
        raise ConfigError(f"{path}: the dataset card maps no label to a concept; run `sat data check`")
    return _from_object(mapping, str(path))


def read_mapping(src: Mapping | list | str | Path) -> dict[int, str]:
    """Read a ``label value -> name`` mapping (background 0 dropped).

    Args:
        src: a mapping, a JSON file (``{"1": "liver"}``, ``{"labels": ...}``, a list of
            ``{"value", "name"|"concept"}`` or nnU-Net's ``{"liver": 1}``), ``FILE.json:KEY`` to pick a
            sub-mapping (e.g. ``totalsegmentator_class_map.json:total``), or a dataset card ``.yaml``.
    """
    if isinstance(src, Mapping | list):
        return _from_object(src, "label mapping")
    text, key = str(src), None
    if not Path(text).exists() and ":" in text:
        text, key = text.rsplit(":", 1)
    path = Path(text)
    if not path.is_file():
        raise InputError(f"label mapping file {path} not found; pass a JSON mapping or a dataset card")
    if path.suffix in (".yaml", ".yml"):
        return _from_card(path)
    try:
        obj = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ConfigError(f"{path} is not valid JSON ({err})") from None
    if key is not None:
        if not isinstance(obj, Mapping) or key not in obj:
            raise ConfigError(f"{path} has no key {key!r}; keys: {', '.join(map(str, obj))[:200]}")
        obj = obj[key]
    return _from_object(obj, str(path))


def _tree() -> Any:
    from sat import knowledge

    return knowledge.load()


def _region_and_kind(tree: Any, concept: Any) -> tuple[str, str]:
    """Body region (own, else the nearest ancestor's, else "unknown"), kind "lesion" or "organ"."""
    parents = [tree[p] if isinstance(p, str) else p for p in tree.ancestors(concept)]
    lesion = bool(getattr(concept, "is_lesion", False)) or any(
        getattr(p, "id", None) == "lesion" or getattr(p, "is_lesion", False) for p in parents
    )
    region = getattr(concept, "region", None) or next((p.region for p in parents if getattr(p, "region", None)), None)
    return str(region or "unknown"), "lesion" if lesion else "organ"


def resolve_classes(mapping: Mapping[int, str]) -> dict[str, tuple[ClassInfo, tuple[int, ...]]]:
    """Resolve names through the knowledge tree: ``concept id -> (ClassInfo, label values)``.

    Several values naming the same concept are merged. Raises UnknownTermError (one line) for a
    name the tree does not know.
    """
    tree = _tree()
    out: dict[str, tuple[ClassInfo, tuple[int, ...]]] = {}
    for value, name in sorted(mapping.items()):
        try:
            concept = tree.resolve(name)
        except UnknownTermError as err:
            hint = f"; did you mean {', '.join(err.suggestions[:3])}?" if err.suggestions else ""
            raise UnknownTermError(
                f"label {value} {name!r} is not a concept of the knowledge tree{hint} (fix the mapping or add a synonym)",
                err.suggestions,
            ) from None
        info = ClassInfo(concept.id, name, *_region_and_kind(tree, concept))
        old = out.get(concept.id)
        out[concept.id] = (old[0] if old else info, (*(old[1] if old else ()), int(value)))
    return out


def case_id(path: Path) -> str:
    """Case id of a file or folder: its name without a label-image suffix."""
    name = path.name
    for suffix in LABEL_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _is_label_file(path: Path) -> bool:
    return path.is_file() and path.name.endswith(LABEL_SUFFIXES)


def find_cases(src: str | Path | Mapping[str, str | Path]) -> dict[str, Path]:
    """``case id -> file or folder`` for a directory (files ``<case>.nii.gz`` or folders ``<case>/``),
    a single label file, or an explicit mapping."""
    if isinstance(src, Mapping):
        return {str(k): Path(v) for k, v in src.items()}
    path = Path(src)
    if _is_label_file(path):
        return {case_id(path): path}
    if not path.is_dir():
        raise InputError(f"{path} is not a directory or label file; check the path")
    cases = {}
    for entry in sorted(path.iterdir()):
        if _is_label_file(entry) or (entry.is_dir() and any(_is_label_file(p) for p in entry.iterdir())):
            cases[case_id(entry)] = entry
    return cases


def _load(path: Path) -> tuple[np.ndarray, np.ndarray]:
    from sat import io

    vol = io.load_label(path)
    array = np.asarray(vol.array)
    if not np.issubdtype(array.dtype, np.integer):
        array = np.rint(array).astype(np.int32)
    return array, np.asarray(vol.affine, dtype=np.float64)


def _read_folder(folder: Path, mapping: Mapping[int, str] | None) -> tuple[np.ndarray, np.ndarray, dict[int, str]]:
    files = [p for p in sorted(folder.iterdir()) if _is_label_file(p)]
    for name in LABELMAP_NAMES:
        single = [p for p in files if case_id(p) == name]
        if single:
            own = next((folder / m for m in MAPPING_NAMES if (folder / m).is_file()), None)
            return (*_load(single[0]), read_mapping(own) if own else dict(mapping or {}))
    # one binary file per class (TotalSegmentator without --ml, SAT per-prompt masks)
    array, affine, names = None, None, {}
    for value, path in enumerate(files, start=1):
        mask, aff = _load(path)
        if array is None:
            array, affine = np.zeros(mask.shape, np.int32), aff
        elif mask.shape != array.shape:
            raise InputError(f"{path} has shape {mask.shape}, other masks in {folder} have {array.shape}")
        array[mask > 0] = value
        names[value] = case_id(path)
    return array, affine, names  # type: ignore[return-value]


def read_case(path: Path, mapping: Mapping[int, str] | None) -> LabelImage:
    """Load one case (file, SAT output folder or per-class mask folder) with concepts resolved."""
    if path.is_dir():
        array, affine, names = _read_folder(path, mapping)
    else:
        (array, affine), names = _load(path), dict(mapping or {})
    if not names:
        raise InputError(f"no label mapping for {path}; pass --pred-labels (value -> name JSON)")
    values = {cid: vals for cid, (_, vals) in resolve_classes(names).items()}
    return LabelImage(array, affine, values)


def align_to(label: LabelImage, shape: tuple[int, ...], affine: np.ndarray) -> LabelImage:
    """Put ``label`` on the reference grid (shape, affine) by nearest neighbour in physical space.

    Exact for grids that differ by axis flips/permutations (e.g. DICOM vs NIfTI storage order).
    """
    if label.array.shape == tuple(shape) and np.allclose(label.affine, affine, atol=1e-3):
        return label
    from sat.io import Volume
    from sat.preprocess import resample_to

    affine = np.asarray(affine, dtype=np.float64)
    ref_to_src = np.linalg.solve(label.affine, affine)
    corners = np.array(np.meshgrid(*[[0, n - 1] for n in shape], indexing="ij")).reshape(3, -1)
    mapped = ref_to_src[:3, :3] @ corners + ref_to_src[:3, 3:4]
    if (mapped.max(axis=1) < -0.5).any() or (mapped.min(axis=1) > np.asarray(label.array.shape) - 0.5).any():
        raise InputError("prediction and reference do not overlap in physical space; check their affines")
    if np.abs(np.abs(ref_to_src[:3, :3]) - np.rint(np.abs(ref_to_src[:3, :3]))).max() > 1e-3:
        log.warning("prediction grid differs from the reference grid; resampling with nearest neighbour")
    reference = Volume(np.zeros((1, 1, 1), np.uint8), affine)
    reference.array = np.broadcast_to(reference.array, tuple(shape))  # shape only, no memory
    moved = resample_to(Volume(label.array, label.affine), reference, mode="nearest")
    return LabelImage(np.asarray(moved.array), affine, label.values)
