"""Concept retrieval metrics for text encoders and string matching.

A query is (text, expected concept ids). A method ranks concept ids per query:
encoders by cosine similarity to each concept's *name* embedding, string
matching by ``tree.resolve`` / ``tree.search``. Metrics: Recall@k, laterality
accuracy (the expected side outranks the other side) and sibling accuracy (the
expected concept outranks its numbered siblings, e.g. L3 vs L2/L4).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from sat.text.pairs import norm, serial_siblings


@dataclass(frozen=True)
class Query:
    """A prompt and the concept ids that count as correct."""

    text: str
    expected: frozenset[str]


def held_out_queries(held_out: Sequence[tuple[str, str]], concepts: Mapping[str, Any]) -> list[Query]:
    """Held-out (id, synonym) pairs -> queries; a synonym shared by several concepts accepts each of them."""
    owners: dict[str, set[str]] = {}
    for cid, concept in concepts.items():
        for text in (concept.name, *concept.synonyms):
            owners.setdefault(norm(text), set()).add(cid)
    return [Query(text, frozenset(owners.get(norm(text), set()) | {cid})) for cid, text in held_out]


def opposite_side(concept: Any) -> str | None:
    """Id of the same structure on the other side (None when unsided or unknown)."""
    if concept.laterality == "left":
        return concept.right_id
    if concept.laterality == "right":
        return concept.left_id
    return None


@dataclass
class Ranking:
    """Similarity of every query to every concept (encoders) or top-k lists (string matching)."""

    ids: list[str]
    scores: torch.Tensor | None = None  # [Q, C]
    top: list[list[str]] | None = None

    def topk(self, k: int) -> list[list[str]]:
        if self.top is not None:
            return [t[:k] for t in self.top]
        index = self.scores.topk(min(k, len(self.ids)), dim=1).indices
        return [[self.ids[j] for j in row] for row in index.tolist()]

    def prefers(self, q: int, good: str, bad: str) -> bool | None:
        """Does query q rank ``good`` above ``bad``? (string matching: only when one of them is top-1)."""
        if self.scores is not None:
            col = {c: j for j, c in enumerate(self.ids)}
            return bool(self.scores[q, col[good]] > self.scores[q, col[bad]])
        top = self.top[q]
        return None if not top or top[0] not in (good, bad) else top[0] == good


def rank_by_encoder(encode: Callable[[list[str]], torch.Tensor], concepts: Mapping[str, Any], queries: Sequence[Query]) -> Ranking:
    """Cosine similarity of query embeddings to concept-name embeddings."""
    ids = sorted(concepts)
    names = encode([concepts[c].name for c in ids])
    embedded = encode([q.text for q in queries])
    return Ranking(ids, scores=embedded @ names.T)


def rank_by_tree(tree: Any, queries: Sequence[Query], *, k: int = 5) -> Ranking:
    """String matching: ``tree.resolve`` as top-1, then ``tree.search`` hits; unresolved -> empty list."""
    from sat.errors import UnknownTermError

    top = []
    for query in queries:
        ranked: list[str] = []
        with contextlib.suppress(UnknownTermError):
            ranked.append(tree.resolve(query.text).id)
        for concept, _ in tree.search(query.text, k=k):
            if concept.id not in ranked:
                ranked.append(concept.id)
        top.append(ranked[:k])
    return Ranking(sorted(tree.concepts), top=top)


def recall(ranking: Ranking, queries: Sequence[Query], k: int) -> float:
    """Fraction of queries with an expected concept among the top k."""
    hits = [bool(set(top) & q.expected) for top, q in zip(ranking.topk(k), queries, strict=True)]
    return sum(hits) / max(1, len(hits))


def _pairwise(ranking: Ranking, cases: list[tuple[int, str, list[str]]]) -> tuple[float, int]:
    scored = []
    for q, good, bads in cases:
        results = [ranking.prefers(q, good, bad) for bad in bads]
        scored.append(all(r is True for r in results))
    return (sum(scored) / len(scored) if scored else float("nan")), len(scored)


def laterality_accuracy(ranking: Ranking, queries: Sequence[Query], concepts: Mapping[str, Any]) -> tuple[float, int]:
    """Over queries for a sided concept: share ranking it above its other-side twin; and their count."""
    cases = []
    for q, query in enumerate(queries):
        for cid in sorted(query.expected):
            other = opposite_side(concepts[cid])
            if other in concepts and other not in query.expected:
                cases.append((q, cid, [other]))
                break
    return _pairwise(ranking, cases)


def sibling_accuracy(ranking: Ranking, queries: Sequence[Query], concepts: Mapping[str, Any]) -> tuple[float, int]:
    """Over queries for a numbered concept (L3, rib 5): share ranking it above all numbered siblings."""
    cases = []
    for q, query in enumerate(queries):
        for cid in sorted(query.expected):
            siblings = [s for s in serial_siblings(cid, concepts) if s not in query.expected]
            if siblings:
                cases.append((q, cid, siblings))
                break
    return _pairwise(ranking, cases)


def throughput(encode: Callable[[list[str]], torch.Tensor], texts: Sequence[str], *, repeats: int = 3) -> float:
    """Best-of-``repeats`` prompts per second of ``encode`` over ``texts``."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        encode(list(texts))
        best = min(best, time.perf_counter() - start)
    return len(texts) / best


def laterality_probes(concepts: Mapping[str, Any]) -> list[Query]:
    """Templated sided prompts for every left/right pair: "kidney, left", "lt kidney", "kidney (right side)"..."""
    out = []
    for cid, concept in sorted(concepts.items()):
        if concept.laterality not in ("left", "right") or concept.unsided_id not in concepts:
            continue
        base = concepts[concept.unsided_id].name.lower()
        side, short = concept.laterality, "lt" if concept.laterality == "left" else "rt"
        for text in (f"{side} {base}", f"{base}, {side}", f"{short} {base}", f"{base} ({side} side)", f"the {side}-sided {base}"):
            out.append(Query(text, frozenset({cid})))
    return out


def side_swaps(ranking: Ranking, queries: Sequence[Query], concepts: Mapping[str, Any]) -> int:
    """Queries whose top-1 concept is the other-side twin of the expected one (must be 0)."""
    swaps = 0
    for top, query in zip(ranking.topk(1), queries, strict=True):
        twins = {opposite_side(concepts[c]) for c in query.expected} - {None} - set(query.expected)
        swaps += bool(top and top[0] in twins)
    return swaps
