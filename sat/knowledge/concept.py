"""The ``Concept`` record of the knowledge tree."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Concept:
    """One anatomical structure or lesion class.

    Attributes:
        id: stable snake_case id ("kidney_left", "vertebrae_l3", "lumbar_vertebra").
        name: preferred English name ("left kidney").
        synonyms: other names (source synonyms, dataset spellings, abbreviations, word orders).
        definition: text definition from Uberon (or curated), "" when none.
        parents: ((parent_id, "is_a" | "part_of"), ...).
        laterality: "left", "right", "unsided" (has sided children) or None (midline / not paired).
        left_id, right_id, unsided_id: the sibling concepts of the same structure, or None.
        region: body region ("abdomen", "thorax", "head", ...), or None.
        modalities: modalities it is labelled in ("ct", "mr", "pet").
        xrefs: codes stated by a source (uberon, radlex, acr, fma, umls, snomed, totalsegmentator, ...).
        datasets: datasets that label it ("TotalSegmentator/total", "SAT/BTCV", a dataset card name).
        is_lesion: True for lesion / tumour classes.

    Example:
        >>> import sat.knowledge as sk
        >>> sk.resolve("kidney, left").id
        'kidney_left'
    """

    id: str
    name: str
    synonyms: tuple[str, ...] = ()
    definition: str = ""
    parents: tuple[tuple[str, str], ...] = ()
    laterality: str | None = None
    left_id: str | None = None
    right_id: str | None = None
    unsided_id: str | None = None
    region: str | None = None
    modalities: tuple[str, ...] = ()
    xrefs: dict[str, str] = field(default_factory=dict, hash=False, compare=False)
    datasets: tuple[str, ...] = ()
    is_lesion: bool = False

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Concept:
        """Build from one artifact entry."""
        return cls(
            id=data["id"], name=data["name"], synonyms=tuple(data.get("synonyms", ())),
            definition=data.get("definition") or "",
            parents=tuple((p, r) for p, r in data.get("parents", ())),
            laterality=data.get("laterality"), left_id=data.get("left_id"), right_id=data.get("right_id"),
            unsided_id=data.get("unsided_id"), region=data.get("region"),
            modalities=tuple(data.get("modalities", ())), xrefs=dict(data.get("xrefs", {})),
            datasets=tuple(data.get("datasets", ())), is_lesion=bool(data.get("is_lesion", False)),
        )

    @property
    def terms(self) -> tuple[str, ...]:
        """The preferred name followed by every synonym."""
        return (self.name, *self.synonyms)

    def __str__(self) -> str:
        return f"{self.id} ({self.name})"
