"""``KnowledgeTree``: the compiled anatomy vocabulary as a networkx DiGraph with a term index.

Example:
    >>> from sat.knowledge import load
    >>> tree = load()
    >>> tree.resolve("third lumbar vertebra").id
    'vertebrae_l3'
    >>> sorted(c.id for c in tree.labelled_descendants(tree["kidney"], dataset="TotalSegmentator/total"))
    ['kidney_left', 'kidney_right']
"""

from __future__ import annotations

import difflib
import functools
import gzip
import json
import logging
from collections.abc import Collection, Iterator
from importlib import resources
from pathlib import Path

import networkx as nx

from sat.errors import ConfigError, UnknownTermError
from sat.knowledge.concept import Concept
from sat.knowledge.matcher import TermIndex
from sat.knowledge.normalize import words

log = logging.getLogger(__name__)
ARTIFACT = "knowledge_tree.json.gz"
MATCH_SCORES = {"exact": 1.0, "bag": 0.97, "modality": 0.95, "generic": 0.94, "laterality": 0.93, "typo": 0.9}


class KnowledgeTree:
    """Concepts, their typed parent links (a DiGraph, edges parent -> child) and a term index.

    ``graph.edges[parent, child]["relation"]`` is "is_a" or "part_of".
    """

    def __init__(self, data: dict) -> None:
        self.data = data
        self.concepts: dict[str, Concept] = {cid: Concept.from_dict(c) for cid, c in data["concepts"].items()}
        self.graph = nx.DiGraph()
        self.graph.add_nodes_from(self.concepts)
        for c in self.concepts.values():
            for parent, rel in c.parents:
                self.graph.add_edge(parent, c.id, relation=rel)
        sided = {cid: {k: v for k, v in (("left", c.left_id), ("right", c.right_id)) if v}
                 for cid, c in self.concepts.items() if c.left_id or c.right_id}
        popular = [" ".join(words(c.name)) for c in sorted(self.concepts.values(),
                                                           key=lambda c: (-len(c.datasets), c.id))]
        self.index = TermIndex({cid: [*c.terms, c.id] for cid, c in self.concepts.items()},
                               data.get("ambiguous"), sided, popular)
        self._key_owner = self.index.exact

    def __getitem__(self, cid: str) -> Concept:
        try:
            return self.concepts[cid]
        except KeyError:
            raise UnknownTermError(f"no concept with id {cid!r}; use resolve() for free text",
                                   tuple(k for k, _ in self.index.nearest(cid))) from None

    def __contains__(self, cid: object) -> bool:
        return cid in self.concepts

    def __iter__(self) -> Iterator[Concept]:
        return iter(self.concepts.values())

    def __len__(self) -> int:
        return len(self.concepts)

    def _concept(self, c: Concept | str) -> Concept:
        return c if isinstance(c, Concept) else self[c]

    def resolve(self, text: str) -> Concept:
        """The concept ``text`` names (case, punctuation, word order, plurals, laterality
        abbreviations, ordinals, Latin, abbreviations and small typos tolerated).

        Raises:
            UnknownTermError: nothing is close enough; ``.suggestions`` holds the 5 nearest terms.
        """
        if isinstance(text, Concept):
            return text
        if not isinstance(text, str):
            raise UnknownTermError(f"a prompt must be a string, got {type(text).__name__}")
        concept, _how = self.match(text)
        if concept is not None:
            return concept
        suggestions = tuple(self.index.display.get(k, k) for k, _ in self.index.nearest(text, 5))
        shown = ", ".join(repr(s) for s in suggestions)
        raise UnknownTermError(f"unknown anatomical term {text!r}; nearest terms: {shown}", suggestions)

    def match(self, text: str) -> tuple[Concept | None, str]:
        """(the concept ``text`` names or None, how it matched: "id" or a ``TermIndex.lookup`` method).

        Example:
            >>> load().match("rtkidney")[0].id, load().match("rtkidney")[1]
            ('kidney_right', 'laterality')
        """
        if text in self.concepts:
            return self.concepts[text], "id"
        cid, how = self.index.lookup(text)
        return (self.concepts[cid], how) if cid is not None else (None, how)

    def nearest_among(self, text: str, among: Collection[str], k: int = 3) -> list[Concept]:
        """The ``k`` concepts of ``among`` (ids) nearest to ``text``, best first.

        Half the score is word similarity to the concept's terms; half is closeness in the tree
        to the concept ``text`` names (when it names one), with a bonus for the same body
        region and side. Used to suggest what a model can segment instead of an untrained prompt.

        Example:
            >>> [c.id for c in load().nearest_among("left femur", ["hip_left", "hip_right", "liver"], k=1)]
            ['hip_left']
        """
        named, _how = self.match(text) if isinstance(text, str) else (None, "none")
        hops = nx.single_source_shortest_path_length(self._undirected, named.id, cutoff=6) if named else {}
        query = words(text)

        def score(c: Concept) -> float:
            similar = max(_word_similarity(query, words(t)) for t in (*c.terms, c.id.replace("_", " ")))
            close = 1.0 / (1 + hops[c.id]) if c.id in hops else 0.0
            bonus = 0.0
            if named is not None:
                bonus += 0.1 * (c.region is not None and c.region == named.region)
                if named.laterality in ("left", "right") and c.laterality in ("left", "right"):
                    bonus += 0.1 if c.laterality == named.laterality else -0.1
            return 0.5 * similar + 0.5 * close + bonus

        ranked = sorted((self.concepts[c] for c in set(among) if c in self.concepts), key=lambda c: (-score(c), c.id))
        return ranked[:k]

    @functools.cached_property
    def _undirected(self) -> nx.Graph:
        return self.graph.to_undirected(as_view=True)

    def search(self, text: str, k: int = 10) -> list[tuple[Concept, float]]:
        """Up to ``k`` (concept, score in [0, 1]) candidates for ``text``, best first."""
        out: dict[str, float] = {}
        cid, how = self.index.lookup(text)
        if cid is not None:
            out[cid] = MATCH_SCORES[how]
        for key, score in self.index.nearest(text, k * 3):
            owner = self._key_owner.get(key)
            if owner is not None and owner not in out:
                out[owner] = min(score, 0.89)
            if len(out) >= k:
                break
        ranked = sorted(out.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
        return [(self.concepts[c], s) for c, s in ranked]

    def parents(self, c: Concept | str) -> list[Concept]:
        """Direct parents."""
        return [self.concepts[p] for p, _ in self._concept(c).parents if p in self.concepts]

    def children(self, c: Concept | str) -> list[Concept]:
        """Direct children, sorted by id."""
        return [self.concepts[x] for x in sorted(self.graph.successors(self._concept(c).id))]

    def ancestors(self, c: Concept | str) -> list[Concept]:
        """Every concept above ``c`` (is_a and part_of), sorted by id."""
        return [self.concepts[x] for x in sorted(nx.ancestors(self.graph, self._concept(c).id))]

    def descendants(self, c: Concept | str) -> list[Concept]:
        """Every concept below ``c``, sorted by id."""
        return [self.concepts[x] for x in sorted(nx.descendants(self.graph, self._concept(c).id))]

    def labelled_descendants(self, c: Concept | str, dataset: str | None = None, *,
                             among: Collection[str] | None = None) -> list[Concept]:
        """The labelled concepts whose union is ``c``'s mask: ``c`` itself if labelled, else the
        topmost labelled concepts below it.

        "Labelled" means: by any dataset; or by ``dataset`` (a full name such as
        "TotalSegmentator/total" or a prefix such as "TotalSegmentator"); or, with ``among``,
        being one of those concept ids (e.g. the concepts a model was trained on).

        Example:
            >>> tree = load()
            >>> [x.id for x in tree.labelled_descendants("kidney", among={"kidney_left", "kidney_right"})]
            ['kidney_left', 'kidney_right']
        """
        root = self._concept(c)
        allowed = set(among) if among is not None else None

        def labelled(x: Concept) -> bool:
            if allowed is not None:
                return x.id in allowed
            if dataset is None:
                return bool(x.datasets)
            return any(d == dataset or d.startswith(dataset + "/") for d in x.datasets)

        found: dict[str, Concept] = {}
        stack, seen = [root.id], set()
        while stack:
            cid = stack.pop()
            if cid in seen:
                continue
            seen.add(cid)
            concept = self.concepts[cid]
            if labelled(concept):
                found[cid] = concept
                continue
            stack.extend(sorted(self.graph.successors(cid), reverse=True))
        # a concept below another found one is redundant in the union
        ids = set(found)
        keep = [x for x in found.values() if not (nx.ancestors(self.graph, x.id) & ids)]
        return sorted(keep, key=lambda x: x.id)


def _word_similarity(a: list[str], b: list[str]) -> float:
    """Mean of the character-sequence ratio and the word-set overlap of two normalised word lists."""
    if not a or not b:
        return 0.0
    overlap = len(set(a) & set(b)) / len(set(a) | set(b))
    return 0.5 * difflib.SequenceMatcher(None, " ".join(a), " ".join(b)).ratio() + 0.5 * overlap


def artifact_path() -> Path:
    """Path of the shipped artifact."""
    return Path(str(resources.files("sat") / "resources" / ARTIFACT))


def read_artifact(path: Path | None = None) -> dict:
    """The artifact's JSON data."""
    path = Path(path) if path is not None else artifact_path()
    if not path.exists():
        raise ConfigError(f"knowledge tree artifact {path} is missing; run `sat terms build`")
    try:
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError) as err:
        raise ConfigError(f"knowledge tree artifact {path} is corrupt ({err}); run `sat terms build`") from err


@functools.lru_cache(maxsize=4)
def load(path: Path | str | None = None) -> KnowledgeTree:
    """Load (once, cached) the knowledge tree shipped in ``sat/resources``, or ``path``."""
    return KnowledgeTree(read_artifact(Path(path) if path is not None else None))


def resolve(text: str) -> Concept:
    """Shortcut for ``load().resolve(text)``."""
    return load().resolve(text)
