"""Dataset cards: one YAML file per dataset in ``datasets/<name>.yaml``.

A card says what a dataset is (modality, body region, licence, source,
citation), how its files are laid out on disk (``layout``: the name of a
converter in :data:`sat.data.converters.CONVERTERS`) and what every label value
means (the dataset's own name and the knowledge-tree concept id).

Example:
    >>> from sat.data.cards import load_card
    >>> card = load_card("datasets/msd_spleen.yaml")          # doctest: +SKIP
    >>> card.labels[1].concept                                 # doctest: +SKIP
    'spleen'

Minimal card::

    name: msd_spleen
    modality: ct
    region: abdomen
    license: CC-BY-SA-4.0
    source: http://medicaldecathlon.com/
    citation: "Antonelli et al., Nat Commun 2022"
    layout: msd
    labels:
      1: {name: spleen, concept: spleen}

A label whose ``concept`` key is missing is *unmapped* (``sat data check``
fails on it); a label with ``skip: <reason>`` is deliberately not used and its
voxels become background. Cases are found by the converter under ``root``, or
listed explicitly under ``cases`` (layout ``files``). A case's split comes from
the case entry, then ``splits`` (lists of case ids for ``val``/``test``), then
the layout (e.g. a ``meta.csv``), then ``default_split`` (``train``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sat.errors import ConfigError

MODALITIES = ("ct", "mr", "pet")
REGIONS = (
    "abdomen", "brain", "head_neck", "thorax", "pelvis", "spine", "upper_limb", "lower_limb", "whole_body",
)
SPLITS = ("train", "val", "test")
_REQUIRED = ("name", "modality", "region", "license", "source", "citation", "layout", "labels")
_OPTIONAL = ("title", "root", "options", "cases", "splits", "default_split", "notes")
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_]*$")
_CONCEPT_RE = re.compile(r"^[a-z0-9][a-z0-9_]*$")


@dataclass(frozen=True)
class LabelSpec:
    """One label value of a dataset: the dataset's own name and the concept id (None: unmapped or skipped)."""

    value: int
    name: str
    concept: str | None = None
    skip: str | None = None  # reason the label is deliberately not used (voxels -> background)

    @property
    def mapped(self) -> bool:
        """True when the label has a concept id or an explicit skip reason."""
        return self.concept is not None or self.skip is not None


@dataclass(frozen=True)
class LabelFile:
    """One label file of an explicit case; ``values`` maps the file's values to card values (None: as is)."""

    file: str
    values: dict[int, int] | None = None


@dataclass(frozen=True)
class CaseEntry:
    """A case listed explicitly in a card (layout ``files``); paths are relative to the card's root."""

    id: str
    image: str
    labels: tuple[LabelFile, ...] = ()
    split: str | None = None


@dataclass
class DatasetCard:
    """A parsed dataset card. ``path`` is the YAML file it came from (None when built in memory)."""

    name: str
    modality: str
    region: str
    license: str
    source: str
    citation: str
    layout: str
    labels: dict[int, LabelSpec]
    title: str = ""
    root: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    cases: tuple[CaseEntry, ...] = ()
    splits: dict[str, tuple[str, ...]] = field(default_factory=dict)
    default_split: str = "train"
    notes: str = ""
    path: Path | None = None

    def concept_of(self) -> dict[int, str]:
        """Label value -> concept id for every used (mapped, not skipped) label."""
        return {v: s.concept for v, s in self.labels.items() if s.concept is not None and s.skip is None}

    def unmapped(self) -> list[LabelSpec]:
        """Labels with neither a concept id nor a skip reason."""
        return [s for s in self.labels.values() if not s.mapped]

    def split_of(self, case: str, layout_split: str | None = None) -> str:
        """The split of ``case``: card ``splits`` lists, then the layout's split, then ``default_split``."""
        for split, ids in self.splits.items():
            if case in ids:
                return split
        return layout_split if layout_split in SPLITS else self.default_split

    def resolve_root(self, root: str | Path | None = None, *, shared: str | Path | None = None) -> Path:
        """Directory holding the dataset: ``root`` if given, else the card's relative ``root`` under ``shared``."""
        if root is not None:
            return Path(root).expanduser()
        if self.root is None:
            raise ConfigError(f"dataset {self.name!r} has no 'root' in its card: pass --root DIR (the dataset folder)")
        if shared is None:
            raise ConfigError(f"dataset {self.name!r}: its root {self.root!r} is relative; pass --shared DIR")
        return Path(shared) / self.root


def _fail(where: str, message: str) -> ConfigError:
    return ConfigError(f"{where}: {message}")


def _as_int(value: Any, where: str, what: str) -> int:
    if isinstance(value, bool):
        raise _fail(where, f"{what} must be an integer (got {value!r})")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise _fail(where, f"{what} must be an integer (got {value!r})") from None


def _parse_labels(raw: Any, where: str) -> dict[int, LabelSpec]:
    if not isinstance(raw, dict) or not raw:
        raise _fail(where, "'labels' must be a non-empty mapping value -> {name, concept}")
    labels: dict[int, LabelSpec] = {}
    for key, entry in raw.items():
        value = _as_int(key, where, "label value")
        if value <= 0 or value > 65535:
            raise _fail(where, f"label value {value} must be in 1..65535 (0 is background)")
        if isinstance(entry, str):
            entry = {"name": entry}
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not entry["name"]:
            raise _fail(where, f"label {value} must be a mapping with a non-empty 'name'")
        extra = set(entry) - {"name", "concept", "skip"}
        if extra:
            raise _fail(where, f"label {value} has unknown key(s) {sorted(extra)}; allowed: name, concept, skip")
        concept = entry.get("concept")
        if concept is not None and (not isinstance(concept, str) or not _CONCEPT_RE.match(concept)):
            raise _fail(where, f"label {value}: concept {concept!r} must be a lower-case snake_case id")
        skip = entry.get("skip")
        if skip is not None and not isinstance(skip, str):
            raise _fail(where, f"label {value}: 'skip' must be a string giving the reason")
        labels[value] = LabelSpec(value, entry["name"], concept, skip)
    return labels


def _parse_label_file(raw: Any, where: str) -> LabelFile:
    if isinstance(raw, str):
        return LabelFile(raw)
    if not isinstance(raw, dict) or not isinstance(raw.get("file"), str):
        raise _fail(where, "each entry of a case's 'labels' must be a path or {file: PATH, values: {FROM: TO}}")
    values = raw.get("values")
    if values is not None:
        if not isinstance(values, dict):
            raise _fail(where, f"'values' of {raw['file']!r} must map file values to card values")
        values = {_as_int(k, where, "file value"): _as_int(v, where, "card value") for k, v in values.items()}
    return LabelFile(raw["file"], values)


def _parse_cases(raw: Any, where: str) -> tuple[CaseEntry, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise _fail(where, "'cases' must be a list of {id, image, label|labels, split}")
    cases = []
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str) or not isinstance(item.get("image"), str):
            raise _fail(where, f"case {item!r} needs string 'id' and 'image'")
        if not _NAME_RE.match(item["id"]):
            raise _fail(where, f"case id {item['id']!r} must be lower-case letters, digits and '_'")
        parts = item.get("labels", [item["label"]] if "label" in item else [])
        if not isinstance(parts, list):
            raise _fail(where, f"case {item['id']!r}: 'labels' must be a list")
        split = item.get("split")
        if split is not None and split not in SPLITS:
            raise _fail(where, f"case {item['id']!r}: split {split!r} must be one of {', '.join(SPLITS)}")
        cases.append(CaseEntry(item["id"], item["image"], tuple(_parse_label_file(p, where) for p in parts), split))
    ids = [c.id for c in cases]
    if len(set(ids)) != len(ids):
        raise _fail(where, "case ids must be unique")
    return tuple(cases)


def _parse_splits(raw: Any, where: str) -> dict[str, tuple[str, ...]]:
    if raw is None:
        return {}
    if not isinstance(raw, dict) or set(raw) - set(SPLITS):
        raise _fail(where, f"'splits' must map {', '.join(SPLITS)} to lists of case ids")
    return {k: tuple(str(c) for c in (v or ())) for k, v in raw.items()}


def _check_required(data: dict, where: str) -> None:
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise _fail(where, f"missing required field(s) {', '.join(missing)}")
    unknown = sorted(set(data) - set(_REQUIRED) - set(_OPTIONAL))
    if unknown:
        raise _fail(where, f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(_REQUIRED + _OPTIONAL)}")
    for key in ("name", "license", "source", "citation", "layout"):
        if not isinstance(data[key], str) or not data[key].strip():
            raise _fail(where, f"field {key!r} must be a non-empty string")
    if not _NAME_RE.match(data["name"]):
        raise _fail(where, f"name {data['name']!r} must be lower-case letters, digits and '_'")
    if data["modality"] not in MODALITIES:
        raise _fail(where, f"modality {data['modality']!r} must be one of {', '.join(MODALITIES)}")
    if data["region"] not in REGIONS:
        raise _fail(where, f"region {data['region']!r} must be one of {', '.join(REGIONS)}")
    root = data.get("root")
    if root is not None and (not isinstance(root, str) or Path(root).is_absolute() or "$" in root):
        raise _fail(where, f"root {root!r} must be a relative path (absolute paths go on the command line: --root)")


def card_from_dict(data: Any, *, where: str = "card", path: Path | None = None) -> DatasetCard:
    """Validate a card mapping (as read from YAML) and build a :class:`DatasetCard`; raises ConfigError."""
    if not isinstance(data, dict):
        raise _fail(where, "a card must be a YAML mapping of fields (name, modality, region, ...)")
    _check_required(data, where)
    options = data.get("options") or {}
    if not isinstance(options, dict):
        raise _fail(where, "'options' must be a mapping")
    default_split = data.get("default_split", "train")
    if default_split not in SPLITS:
        raise _fail(where, f"default_split {default_split!r} must be one of {', '.join(SPLITS)}")
    card = DatasetCard(
        name=data["name"], modality=data["modality"], region=data["region"], license=data["license"],
        source=data["source"], citation=data["citation"], layout=data["layout"],
        labels=_parse_labels(data["labels"], where), title=str(data.get("title", "")), root=data.get("root"),
        options=options, cases=_parse_cases(data.get("cases"), where),
        splits=_parse_splits(data.get("splits"), where), default_split=default_split,
        notes=str(data.get("notes", "")), path=path,
    )
    for case in card.cases:
        for part in case.labels:
            bad = sorted(set((part.values or {}).values()) - set(card.labels))
            if bad:
                raise _fail(where, f"case {case.id!r}: {part.file} maps to undeclared label value(s) {bad}")
    return card


def load_card(path: str | Path) -> DatasetCard:
    """Read and validate ``datasets/<name>.yaml``; raises ConfigError with a one-line reason.

    Example:
        >>> card = load_card("datasets/totalseg_abdomen.yaml")   # doctest: +SKIP
        >>> card.modality, len(card.labels)                      # doctest: +SKIP
        ('ct', 117)
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"dataset card {path} not found: give the path of a datasets/<name>.yaml file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}:{line} is not valid YAML ({getattr(err, 'problem', err)})") from None
    card = card_from_dict(data, where=str(path), path=path)
    if card.name != path.stem:
        raise ConfigError(f"{path}: name {card.name!r} must equal the file name {path.stem!r}")
    from sat.data.converters import CONVERTERS

    if card.layout not in CONVERTERS:
        raise ConfigError(f"{path}: layout {card.layout!r} is not one of {', '.join(sorted(CONVERTERS))}")
    return card


def load_cards(paths: list[str | Path]) -> list[DatasetCard]:
    """Load several cards; a directory stands for every ``*.yaml`` in it."""
    cards: list[DatasetCard] = []
    for p in paths:
        p = Path(p)
        files = sorted(p.glob("*.yaml")) if p.is_dir() else [p]
        cards.extend(load_card(f) for f in files)
    names = [c.name for c in cards]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"dataset card(s) given twice: {', '.join(dup)}")
    return cards
