"""Training texts from the knowledge tree: positive views, held-out synonyms, hard negatives.

Every concept gets a set of *views*, texts that must embed close to each other:
its name, its (training) synonyms, its definition, child-parent relation
sentences ("the left kidney is part of the urinary system") and dataset
spellings (the snake_case id and name-like cross-references such as the
TotalSegmentator class). Any two views of a concept form a positive pair.

Hard negatives of a concept are the structures most easily confused with it:
the other side (left vs right kidney), its siblings (L3 vs L4; numbered
siblings first) and its parents and children.

About 15% of all synonyms are held out for evaluation: a (concept id, synonym)
pair is held out when its seeded hash falls below 0.15, so the choice depends
neither on the order nor on the version of the tree; held-out strings never
appear in any training view. Imports no torch.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

HOLDOUT_FRACTION = 0.15
HOLDOUT_SEED = 0
_DIGITS = re.compile(r"\d+")
_CODE_LIKE = re.compile(r"^[A-Z]+[:_]?\d|^\d+$|^[A-Z]{1,5}\d")
_XREF_SPELLING_KEYS = ("totalsegmentator", "vista3d", "sat", "dataset", "label")


def norm(text: str) -> str:
    """Case- and space-folded text used to compare strings."""
    return " ".join(text.lower().replace("_", " ").split())


@dataclass(frozen=True)
class View:
    """One training text of a concept. kind: name|synonym|definition|relation|dataset."""

    text: str
    concept_id: str
    kind: str


@dataclass
class PairSet:
    """Everything contrastive pretraining needs from the tree.

    views: concept id -> its training texts (first = the name).
    held_out: (concept id, synonym) pairs kept for evaluation only.
    hard_negatives: concept id -> ids most easily confused with it (most confusable first).
    """

    views: dict[str, list[View]]
    held_out: list[tuple[str, str]]
    hard_negatives: dict[str, tuple[str, ...]]
    names: dict[str, str] = field(default_factory=dict)

    def positive_pairs(self) -> Iterable[tuple[str, str, str]]:
        """(name, other view, kind) for every non-name view: the anchor-positive pairs."""
        for cid, views in self.views.items():
            for view in views[1:]:
                yield self.names[cid], view.text, view.kind

    def texts(self) -> list[str]:
        """All distinct training texts (sorted)."""
        return sorted({v.text for views in self.views.values() for v in views})


def _holdout_score(concept_id: str, synonym: str, seed: int) -> float:
    digest = hashlib.sha256(f"{seed}|{concept_id}|{norm(synonym)}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_synonyms(
    concepts: Mapping[str, Any], *, fraction: float = HOLDOUT_FRACTION, seed: int = HOLDOUT_SEED
) -> tuple[dict[str, tuple[str, ...]], list[tuple[str, str]]]:
    """Split every concept's synonyms into training and held-out ones.

    A (concept, synonym) pair is held out when the seeded hash of the pair,
    mapped to [0, 1), is below ``fraction`` (synonyms equal to some concept's
    name are never held out). The decision for a pair depends on nothing else,
    so it is the same in every version of the tree: a synonym held out once is
    never trained on by a later run. About ``fraction`` of the pairs are held out.
    Returns (concept id -> training synonyms, held-out pairs).

    >>> train, held = split_synonyms(tree.concepts)          # doctest: +SKIP
    """
    all_names = {norm(c.name) for c in concepts.values()}
    candidates: list[tuple[float, str, str]] = []
    for cid, concept in concepts.items():
        seen = set(all_names)  # a synonym that is some concept's name is no test of generalisation
        for synonym in concept.synonyms:
            if norm(synonym) not in seen:
                seen.add(norm(synonym))
                candidates.append((_holdout_score(cid, synonym, seed), cid, synonym))
    held = [(cid, syn) for score, cid, syn in candidates if score < fraction]
    held_keys = {(cid, norm(syn)) for cid, syn in held}
    train = {
        cid: tuple(s for s in concept.synonyms if (cid, norm(s)) not in held_keys and norm(s) != norm(concept.name))
        for cid, concept in concepts.items()
    }
    return train, sorted(held)


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def relation_sentences(concept: Any, concepts: Mapping[str, Any]) -> list[str]:
    """Child-parent sentences: "the left kidney is part of the urinary system"."""
    name = concept.name.lower()
    out = []
    for parent_id, relation in concept.parents:
        parent = concepts.get(parent_id)
        if parent is None:
            continue
        pname = parent.name.lower()
        if relation == "part_of":
            out.append(f"the {name} is part of the {pname}")
        else:
            out.append(f"the {name} is {_article(pname)} {pname}")
    return out


def dataset_spellings(concept: Any) -> list[str]:
    """Spellings datasets use for the concept: its snake_case id and name-like cross-references."""
    out = [concept.id]
    for key, value in (getattr(concept, "xrefs", None) or {}).items():
        values = value if isinstance(value, list | tuple) else [value]
        if any(k in str(key).lower() for k in _XREF_SPELLING_KEYS):
            out += [v for v in values if isinstance(v, str) and v and not _CODE_LIKE.match(v)]
    return out


def concept_views(concept: Any, concepts: Mapping[str, Any], synonyms: tuple[str, ...]) -> list[View]:
    """All training views of one concept (name first), duplicates (case/space-folded) removed."""
    raw = [(concept.name, "name")]
    raw += [(s, "synonym") for s in synonyms]
    if getattr(concept, "definition", ""):
        raw.append((concept.definition, "definition"))
    raw += [(s, "relation") for s in relation_sentences(concept, concepts)]
    raw += [(s, "dataset") for s in dataset_spellings(concept)]
    seen: set[str] = set()
    views = []
    for text, kind in raw:
        if text and norm(text) not in seen:
            seen.add(norm(text))
            views.append(View(text, concept.id, kind))
    return views


def serial_key(concept_id: str) -> str:
    """Id with numbers masked: vertebrae_l3 and vertebrae_l4 share "vertebrae_l#"."""
    return _DIGITS.sub("#", concept_id)


def _number(concept_id: str) -> int:
    found = _DIGITS.findall(concept_id)
    return int(found[-1]) if found else 0


def serial_siblings(concept_id: str, ids: Iterable[str]) -> list[str]:
    """Numbered siblings (same id up to numbers), nearest number first: L3 -> L2, L4, L1, L5..."""
    key, number = serial_key(concept_id), _number(concept_id)
    if key == concept_id:
        return []
    same = [i for i in ids if i != concept_id and serial_key(i) == key]
    return sorted(same, key=lambda i: (abs(_number(i) - number), i))


def hard_negatives(concepts: Mapping[str, Any], *, limit: int = 8) -> dict[str, tuple[str, ...]]:
    """Concept id -> up to ``limit`` hard negatives: other side, numbered siblings, siblings, parents, children."""
    children: dict[str, list[str]] = defaultdict(list)
    by_serial: dict[str, list[str]] = defaultdict(list)
    for cid, concept in concepts.items():
        for parent_id, _ in concept.parents:
            children[parent_id].append(cid)
        by_serial[serial_key(cid)].append(cid)
    out = {}
    for cid, concept in concepts.items():
        sides = [getattr(concept, a, None) for a in ("left_id", "right_id", "unsided_id")]
        parents = [p for p, _ in concept.parents]
        siblings = sorted({s for p in parents for s in children.get(p, ())})
        ranked = sides + serial_siblings(cid, by_serial[serial_key(cid)]) + siblings + parents + sorted(children[cid])
        seen: set[str] = {cid}
        chosen = []
        for other in ranked:
            if other and other not in seen and other in concepts:
                seen.add(other)
                chosen.append(other)
        out[cid] = tuple(chosen[:limit])
    return out


def build_pairs(
    concepts: Mapping[str, Any], *, fraction: float = HOLDOUT_FRACTION, seed: int = HOLDOUT_SEED, negatives: int = 8
) -> PairSet:
    """Views, held-out synonyms and hard negatives of every concept of a tree.

    ``concepts``: id -> Concept (``KnowledgeTree.concepts``). Held-out synonym
    strings are removed from every concept's views, not only their own.

    >>> pairs = build_pairs(sat.knowledge.load().concepts)    # doctest: +SKIP
    >>> pairs.views["kidney_left"][0].text                    # doctest: +SKIP
    'left kidney'
    """
    train_synonyms, held = split_synonyms(concepts, fraction=fraction, seed=seed)
    forbidden = {norm(s) for _, s in held}
    views = {}
    for cid, concept in concepts.items():
        items = concept_views(concept, concepts, train_synonyms[cid])
        name, rest = items[0], [v for v in items[1:] if norm(v.text) not in forbidden]
        views[cid] = [name, *rest]
    names = {cid: concept.name for cid, concept in concepts.items()}
    return PairSet(views, held, hard_negatives(concepts, limit=negatives), names)
