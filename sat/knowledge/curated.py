"""Readers of the curators' folder ``knowledge_tree/`` (YAML and CSV edited by people).

Files:
    concepts.yaml      id -> {name, parents: ["parent_id:is_a|part_of", ...], synonyms, laterality,
                       region, lesion, definition}
    aliases.csv        term,concept,kind,note   (dataset jargon, abbreviations, Latin)
    mappings.csv       concept,source,id        (uberon|acr id of a concept; "-" blocks the automatic match)
    ambiguous.csv      term,concepts,preferred  (a term two concepts may share; ";"-joined ids)
    prompt_variants.csv prompt,expected         (measurement set for resolve())
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from sat.errors import ConfigError

RELATIONS = ("is_a", "part_of")
LATERALITIES = ("left", "right", "unsided", "none")


@dataclass
class Curated:
    """Everything read from ``knowledge_tree/``."""

    concepts: dict[str, dict]
    aliases: list[dict[str, str]] = field(default_factory=list)
    mappings: list[dict[str, str]] = field(default_factory=list)
    ambiguous: dict[str, dict] = field(default_factory=dict)


def _csv(path: Path, columns: tuple[str, ...]) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with open(path, encoding="utf-8", newline="") as handle:
        rows = [r for r in csv.DictReader(row for row in handle if not row.startswith("#"))]
    for i, row in enumerate(rows, start=2):
        missing = [c for c in columns if not (row.get(c) or "").strip()]
        if missing:
            raise ConfigError(f"{path}: row {i} lacks {', '.join(missing)}; fill every column of {', '.join(columns)}")
    return [{k: (v or "").strip() for k, v in row.items() if k} for row in rows]


def _concept(cid: str, entry: object, path: Path) -> dict:
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        raise ConfigError(f"{path}: concept {cid!r} needs a mapping with at least a 'name' string")
    parents = []
    for item in entry.get("parents") or []:
        parent, _, rel = str(item).partition(":")
        rel = rel or "is_a"
        if rel not in RELATIONS:
            raise ConfigError(f"{path}: concept {cid!r} parent {item!r} has relation {rel!r}; use is_a or part_of")
        parents.append((parent.strip(), rel))
    laterality = entry.get("laterality")
    if laterality is not None and laterality not in LATERALITIES:
        raise ConfigError(f"{path}: concept {cid!r} laterality {laterality!r}; use left, right, unsided or none")
    return {
        "name": entry["name"],
        "parents": parents,
        "synonyms": [str(s) for s in entry.get("synonyms") or []],
        "laterality": laterality,
        "region": entry.get("region"),
        "lesion": bool(entry.get("lesion", False)),
        "definition": entry.get("definition"),
    }


def read_curated(folder: Path) -> Curated:
    """Read ``knowledge_tree/``; raises ConfigError on a malformed file."""
    path = folder / "concepts.yaml"
    if not path.exists():
        raise ConfigError(f"{path} is missing; run from the project root or pass --curated")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML ({str(err).splitlines()[0]}); fix the syntax") from err
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must map concept ids to entries")
    concepts = {str(cid): _concept(str(cid), entry, path) for cid, entry in raw.items()}
    aliases = _csv(folder / "aliases.csv", ("term", "concept"))
    mappings = _csv(folder / "mappings.csv", ("concept", "source", "id"))
    ambiguous = {}
    for row in _csv(folder / "ambiguous.csv", ("term", "concepts", "preferred")):
        ambiguous[row["term"]] = {"concepts": row["concepts"].split(";"), "preferred": row["preferred"]}
    return Curated(concepts, aliases, mappings, ambiguous)


def read_prompt_variants(folder: Path) -> list[tuple[str, str]]:
    """(prompt, expected concept id) pairs of ``prompt_variants.csv``."""
    return [(r["prompt"], r["expected"]) for r in _csv(folder / "prompt_variants.csv", ("prompt", "expected"))]


def read_cards(folder: Path) -> dict[str, dict]:
    """Dataset cards ``datasets/*.yaml``: name -> {modality, labels: {value: {name, concept}}}."""
    cards: dict[str, dict] = {}
    for path in sorted(folder.glob("*.yaml")) if folder.is_dir() else []:
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"dataset card {path} is not valid YAML ({str(err).splitlines()[0]})") from err
        if not isinstance(data, dict):
            raise ConfigError(f"dataset card {path} must be a mapping")
        cards[str(data.get("name") or path.stem)] = {"path": str(path), **data}
    return cards
