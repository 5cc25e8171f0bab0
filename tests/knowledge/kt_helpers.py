"""Helpers writing synthetic terminology sources and curated folders for build/check tests (no ../shared needed)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
import zstandard

UBERON = {
    "UBERON:0002113": {"label": "kidney", "description": "A paired organ that makes urine.",
                       "synonyms": ["ren"], "ancestors": {}, "deprecated": False},
    "UBERON:0004538": {"label": "left kidney", "description": "The left one.", "ancestors": {}, "deprecated": False},
    "UBERON:0002107": {"label": "liver", "description": "An organ.", "synonyms": ["hepar", "iecur"],
                       "ancestors": {}, "deprecated": False},
    "UBERON:0013702": {"label": "body proper", "ancestors": {}, "deprecated": False},
}
ACR = {"$version": "x", "bodyParts": [
    {"radlexId": "RID39569", "description": "whole body", "containedById": "RID39569"},
    {"radlexId": "RID56", "description": "abdomen", "containedById": "RID39569"},
    {"radlexId": "RID205", "description": "kidney", "containedById": "RID56", "leftId": "RID205_RID5824",
     "codes": [{"system": "FMA", "code": "7203"}, {"system": "UMLS", "code": "C0022646"}]},
    {"radlexId": "RID205_RID5824", "description": "left kidney", "containedById": "RID56",
     "unsidedId": "RID205", "synonyms": ["ren sinister"]},
    {"radlexId": "RID58", "description": "liver", "containedById": "RID56", "synonyms": ["hepar"]},
]}
CONCEPTS = {
    "body": {"name": "whole body"},
    "abdomen": {"name": "abdomen", "parents": ["body:part_of"]},
    "kidney": {"name": "kidney", "parents": ["abdomen:part_of"]},
    "kidney_left": {"name": "left kidney", "parents": ["kidney:is_a"]},
    "kidney_right": {"name": "right kidney", "parents": ["kidney:is_a"]},
    "liver": {"name": "liver", "parents": ["abdomen:part_of"]},
    "liver_tumor": {"name": "liver tumor", "parents": ["liver:part_of"], "lesion": True},
}


def write_sources(root: Path) -> Path:
    """Write a tiny but complete set of terminology sources under ``root``."""
    for sub in ("uberon", "acr_anatomic_locations", "totalsegmentator", "vista3d", "sat"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    raw = json.dumps(UBERON).encode()
    (root / "uberon/UBERON-ontology-v2026-04-01.json.zst").write_bytes(zstandard.ZstdCompressor().compress(raw))
    (root / "acr_anatomic_locations/body_parts.json").write_text(json.dumps(ACR))
    (root / "totalsegmentator/class_map.json").write_text(json.dumps(
        {"total": {"1": "kidney_right", "2": "kidney_left", "3": "liver"}, "total_mr": {"1": "liver"}}))
    (root / "totalsegmentator/totalsegmentator_snomed_mapping.csv").write_text(
        "Structure,SegmentedPropertyTypeCodeSequence.CodeValue,SegmentedPropertyTypeModifierCodeSequence.CodeValue\n"
        "kidney_left,64033007,7771000\nliver,10200004,\n")
    (root / "vista3d/label_dict.json").write_text(json.dumps({"liver": 1, "left kidney": 14, "hepatic tumor": 26}))
    (root / "vista3d/label_mappings.json").write_text(json.dumps({"LiTS": [[1, 1], [2, 26]]}))
    (root / "vista3d/dataset_original_label_dicts.json").write_text(json.dumps(
        {"LiTS": {"original_label_dict": {"1": "Liver", "2": "Tumor"}, "label_dict": {"1": "liver"}}}))
    (root / "sat/terminology_list.json").write_text(json.dumps({
        "all": ["ct_liver", "ct_left kidney", "mri_liver", "ct_liver tumor", "ct_banana split"],
        "dataset_based": {"LiTS": ["ct_liver", "ct_liver tumor"]}, "abnormal": ["ct_liver tumor"]}))
    return root


def write_curated(folder: Path, concepts: dict | None = None, *, aliases: str | None = None,
                  ambiguous: str | None = None) -> Path:
    """Write a curated folder (concepts.yaml + optional aliases/ambiguous CSV)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "concepts.yaml").write_text(yaml.safe_dump(concepts if concepts is not None else CONCEPTS))
    (folder / "aliases.csv").write_text(aliases if aliases is not None else
                                        "term,concept,kind,note\nhepatic tumor,liver_tumor,spelling,\n")
    if ambiguous is not None:
        (folder / "ambiguous.csv").write_text(ambiguous)
    return folder
