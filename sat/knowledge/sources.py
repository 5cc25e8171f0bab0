"""Readers of the terminology sources (Uberon, ACR index, TotalSegmentator, VISTA3D, SAT vocabulary).

Only ``sat terms build`` uses this module; the package never needs the sources at run time.
Each reader returns plain Python data; nothing here invents an identifier.
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from sat.errors import ConfigError

log = logging.getLogger(__name__)

UBERON_FILE = "uberon/UBERON-ontology-v2026-04-01.json.zst"
ACR_FILE = "acr_anatomic_locations/body_parts.json"
TS_CLASS_MAP = "totalsegmentator/class_map.json"
TS_SNOMED = "totalsegmentator/totalsegmentator_snomed_mapping.csv"
VISTA_LABELS = "vista3d/label_dict.json"
VISTA_MAPPINGS = "vista3d/label_mappings.json"
VISTA_ORIGINAL = "vista3d/dataset_original_label_dicts.json"
SAT_TERMS = "sat/terminology_list.json"
ACR_REGIONS = frozenset({"head", "neck", "thorax", "abdomen", "pelvis", "back", "upper extremity", "lower extremity"})
SAT_MODALITY = {"ct": "ct", "mri": "mr", "mr": "mr", "pet": "pet"}


@dataclass
class ClassList:
    """Names a source labels: ``names[name] -> {(dataset, modality), ...}``."""

    source: str
    names: dict[str, set[tuple[str, str]]] = field(default_factory=dict)

    def add(self, name: str, dataset: str, modality: str) -> None:
        self.names.setdefault(name, set()).add((dataset, modality))


def _require(path: Path) -> Path:
    if not path.exists():
        raise ConfigError(f"terminology source {path} is missing; pass --sources pointing at the shared terms folder")
    return path


def read_json(path: Path) -> object:
    with open(_require(path), encoding="utf-8") as handle:
        return json.load(handle)


def read_uberon(root: Path) -> dict[str, dict]:
    """Uberon terms: id -> {label, description, synonyms, ancestors, deprecated}."""
    import zstandard

    with open(_require(root / UBERON_FILE), "rb") as handle:
        raw = zstandard.ZstdDecompressor().stream_reader(handle).read()
    data = json.loads(raw)
    return {k: v for k, v in data.items() if k.startswith("UBERON:") and not v.get("deprecated")}


def read_acr(root: Path) -> dict[str, dict]:
    """ACR Common Anatomic Location Index nodes by RadLex id."""
    data = read_json(root / ACR_FILE)
    return {node["radlexId"]: node for node in data["bodyParts"]}


def acr_region(nodes: dict[str, dict], rid: str) -> str | None:
    """The body region of an ACR node: the node of its containedBy path just below "whole body"."""
    seen: list[str] = []
    node = nodes.get(rid)
    while node is not None and node["radlexId"] not in seen:
        seen.append(node["radlexId"])
        parent = node.get("containedById")
        if parent is None or parent == node["radlexId"]:
            break
        node = nodes.get(parent)
    names = [nodes[r]["description"] for r in seen]
    if len(names) < 2 or names[-1] != "whole body":  # a broken containedBy chain says nothing
        return None
    region = names[-2]
    for side in ("left ", "right "):
        region = region.removeprefix(side)
    return region if region in ACR_REGIONS else None


def read_totalsegmentator(root: Path) -> ClassList:
    """Every TotalSegmentator task's class names (``*_mr`` tasks are MR, the others CT)."""
    data = read_json(root / TS_CLASS_MAP)
    out = ClassList("totalsegmentator")
    for task, mapping in data.items():
        modality = "mr" if task.endswith("_mr") or "_mr_" in task else "ct"
        for name in mapping.values():
            out.add(name, f"TotalSegmentator/{task}", modality)
    return out


def read_totalsegmentator_tasks(root: Path) -> dict[str, list[str]]:
    """task -> class names (label value order)."""
    data = read_json(root / TS_CLASS_MAP)
    return {task: [m[k] for k in sorted(m, key=int)] for task, m in data.items()}


def read_ts_snomed(root: Path) -> dict[str, dict[str, str]]:
    """TotalSegmentator structure -> SNOMED codes stated by its DICOM-SEG mapping."""
    out: dict[str, dict[str, str]] = {}
    with open(_require(root / TS_SNOMED), encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            code = row.get("SegmentedPropertyTypeCodeSequence.CodeValue", "").strip()
            if not code:
                continue
            entry = {"snomed_type": code}
            modifier = row.get("SegmentedPropertyTypeModifierCodeSequence.CodeValue", "").strip()
            if modifier:
                entry["snomed_modifier"] = modifier
            out[row["Structure"]] = entry
    return out


def read_vista3d(root: Path) -> ClassList:
    """VISTA3D global class names, with the datasets that label each one (CT)."""
    labels: dict[str, int] = read_json(root / VISTA_LABELS)  # type: ignore[assignment]
    by_id = {v: k for k, v in labels.items()}
    mappings: dict[str, list] = read_json(root / VISTA_MAPPINGS)  # type: ignore[assignment]
    out = ClassList("vista3d")
    for name in labels:
        out.add(name, "VISTA3D", "ct")
    for dataset, pairs in mappings.items():
        for _local, glob in pairs:
            if glob in by_id:
                out.add(by_id[glob], f"VISTA3D/{dataset}", "ct")
    original: dict[str, dict] = read_json(root / VISTA_ORIGINAL)  # type: ignore[assignment]
    for dataset, dicts in original.items():
        for key in ("original_label_dict", "label_dict"):
            for name in dicts.get(key, {}).values():
                out.add(name, f"VISTA3D/{dataset}", "ct")
    return out


def read_sat(root: Path) -> ClassList:
    """The original SAT vocabulary: names without modality prefix, by dataset and modality."""
    data: dict = read_json(root / SAT_TERMS)  # type: ignore[assignment]
    out = ClassList("sat")
    for item in data["all"]:
        modality, name = item.split("_", 1)
        out.add(name, "SAT", SAT_MODALITY.get(modality, modality))
    for dataset, items in data["dataset_based"].items():
        for item in items:
            modality, name = item.split("_", 1)
            out.add(name, f"SAT/{dataset}", SAT_MODALITY.get(modality, modality))
    return out


def sat_lesions(root: Path) -> set[str]:
    """Names the SAT vocabulary marks as lesions (abnormal)."""
    data: dict = read_json(root / SAT_TERMS)  # type: ignore[assignment]
    return {item.split("_", 1)[1] for item in data["abnormal"]}
