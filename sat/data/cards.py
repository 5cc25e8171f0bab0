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

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from sat.errors import ConfigError

MODALITIES = ("ct", "mr", "pet")
REGIONS = (
    "abdomen", "brain", "head_neck", "thorax", "pelvis", "spine", "upper_limb", "lower_limb", "whole_body",
)
SPLITS = ("train", "val", "test")

Split = Literal["train", "val", "test"]
SnakeId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_]*$")]  # lower-case snake_case
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class _Schema(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LabelSpec(_Schema):
    """One label value of a dataset: the dataset's own name and the concept id (None: unmapped or skipped)."""

    value: int = Field(ge=1, le=65535, description="label value in the files (0 is background)")
    name: Text
    concept: SnakeId | None = None
    skip: str | None = Field(None, description="why the label is deliberately not used (voxels -> background)")

    @property
    def mapped(self) -> bool:
        """True when the label has a concept id or an explicit skip reason."""
        return self.concept is not None or self.skip is not None


class LabelFile(_Schema):
    """One label file of an explicit case; ``values`` maps the file's values to card values (None: as is)."""

    file: str
    values: dict[int, int] | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_path(cls, data: Any) -> Any:
        return {"file": data} if isinstance(data, str) else data


class CaseEntry(_Schema):
    """A case listed explicitly in a card (layout ``files``); paths are relative to the card's root."""

    id: SnakeId
    image: str
    labels: tuple[LabelFile, ...] = ()
    split: Split | None = None

    @model_validator(mode="before")
    @classmethod
    def _one_label(cls, data: Any) -> Any:
        if isinstance(data, dict) and "label" in data and "labels" not in data:
            data = {**data, "labels": [data["label"]]}
            del data["label"]
        return data


class DatasetCard(BaseModel):
    """A parsed dataset card (the YAML fields; see this module's docstring). ``path`` is the YAML
    file it came from (None when built in memory)."""

    model_config = ConfigDict(extra="forbid")

    name: SnakeId
    modality: Literal["ct", "mr", "pet"]
    region: Literal[REGIONS]  # type: ignore[valid-type]
    license: Text
    source: Text
    citation: Text
    layout: Text
    labels: dict[int, LabelSpec] = Field(min_length=1)
    title: str = ""
    root: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    cases: tuple[CaseEntry, ...] = ()
    splits: dict[Split, tuple[str, ...]] = Field(default_factory=dict)
    default_split: Split = "train"
    notes: str = ""
    path: Path | None = Field(None, exclude=True)

    @field_validator("labels", mode="before")
    @classmethod
    def _label_entries(cls, raw: Any) -> Any:
        """``{value: name}`` or ``{value: {name, concept, skip}}``; the value is copied into each entry."""
        if not isinstance(raw, dict):
            return raw
        return {k: {"name": v, "value": k} if isinstance(v, str) else {**v, "value": k} if isinstance(v, dict) else v
                for k, v in raw.items()}

    @field_validator("options", mode="before")
    @classmethod
    def _no_options(cls, raw: Any) -> Any:
        return {} if raw is None else raw

    @field_validator("splits", mode="before")
    @classmethod
    def _empty_splits(cls, raw: Any) -> Any:
        return {k: v or () for k, v in raw.items()} if isinstance(raw, dict) else raw

    @field_validator("root")
    @classmethod
    def _relative_root(cls, root: str | None) -> str | None:
        if root is not None and (Path(root).is_absolute() or "$" in root):
            raise ValueError("must be a relative path (absolute paths go on the command line: --root)")
        return root

    @model_validator(mode="after")
    def _cases_agree(self) -> DatasetCard:
        ids = [c.id for c in self.cases]
        if len(set(ids)) != len(ids):
            raise ValueError("case ids must be unique")
        for case in self.cases:
            for part in case.labels:
                bad = sorted(set((part.values or {}).values()) - set(self.labels))
                if bad:
                    raise ValueError(f"case {case.id!r}: {part.file} maps to undeclared label value(s) {bad}")
        return self

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


_FIELDS = [f for f in DatasetCard.model_fields if f != "path"]


def _one_line(err: ValidationError, where: str) -> ConfigError:
    """The first schema error as one line: where, the field's location, what is wrong, what was given."""
    first = err.errors()[0]
    *parent, last = [str(p) for p in first["loc"]] or ["card"]
    loc = ".".join([*parent, last])
    if first["type"] == "missing":
        text = f"missing required field {loc!r}"
    elif first["type"] == "extra_forbidden":
        text = f"{'.'.join(parent)}: unknown key {last!r}" if parent else \
            f"unknown field {last!r}; allowed: {', '.join(_FIELDS)}"
    elif first["type"] == "string_pattern_mismatch":
        text = f"{loc}: {first['input']!r} must be lower-case snake_case (letters, digits, '_')"
    elif not first["loc"]:  # a rule over several fields
        text = first["msg"].removeprefix("Value error, ")
    else:
        text = f"{loc}: {first['msg'].removeprefix('Value error, ')} (got {repr(first.get('input'))[:60]})"
    more = err.error_count() - 1
    return ConfigError(f"{where}: {text}" + (f" (and {more} more error(s))" if more else ""))


def card_from_dict(data: Any, *, where: str = "card", path: Path | None = None) -> DatasetCard:
    """Validate a card mapping (as read from YAML) and build a :class:`DatasetCard`; raises ConfigError."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: a card must be a YAML mapping of fields (name, modality, region, ...)")
    if "path" in data:
        raise ConfigError(f"{where}: unknown field 'path'; allowed: {', '.join(_FIELDS)}")
    try:
        card = DatasetCard.model_validate(data)
    except ValidationError as err:
        raise _one_line(err, where) from None
    card.path = path
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
