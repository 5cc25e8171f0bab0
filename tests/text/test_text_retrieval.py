"""Retrieval metrics: recall, laterality, siblings, swaps, probes, string-matching ranking."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from sat.errors import UnknownTermError
from sat.text.retrieval import (
    Query,
    Ranking,
    held_out_queries,
    laterality_accuracy,
    laterality_probes,
    rank_by_encoder,
    rank_by_tree,
    recall,
    sibling_accuracy,
    side_swaps,
    throughput,
)


def _ranking(tree, rows: dict[str, list[float]]) -> Ranking:
    ids = sorted(tree)
    return Ranking(ids, scores=torch.tensor([[rows[q].get(c, 0.0) if isinstance(rows[q], dict) else 0 for c in ids] for q in rows]))


def test_metrics_on_a_known_ranking(tiny_tree):
    queries = [Query("ren sinister", frozenset({"kidney_left"})), Query("lumbar vertebra 3", frozenset({"vertebrae_l3"})),
               Query("hepar", frozenset({"liver"}))]
    ranking = _ranking(tiny_tree, {
        "ren sinister": {"kidney_right": 0.9, "kidney_left": 0.8, "kidney": 0.1},
        "lumbar vertebra 3": {"vertebrae_l3": 0.9, "vertebrae_l4": 0.85, "vertebrae_l2": 0.5},
        "hepar": {"spleen": 0.7, "liver": 0.6},
    })
    assert recall(ranking, queries, 1) == pytest.approx(1 / 3)
    assert recall(ranking, queries, 2) == pytest.approx(1.0)
    assert laterality_accuracy(ranking, queries, tiny_tree) == (0.0, 1)
    assert side_swaps(ranking, queries, tiny_tree) == 1
    assert sibling_accuracy(ranking, queries, tiny_tree) == (1.0, 1)


def test_held_out_queries_accept_every_owner(tiny_tree):
    queries = held_out_queries([("kidney_left", "lt kidney"), ("liver", "hepar")], tiny_tree)
    assert queries[0].expected == {"kidney_left"} and queries[1].text == "hepar"


def test_laterality_probes(tiny_tree):
    probes = laterality_probes(tiny_tree)
    assert Query("kidney, left", frozenset({"kidney_left"})) in probes
    assert Query("rt kidney", frozenset({"kidney_right"})) in probes
    assert len(probes) == 10


class _StringTree:
    def __init__(self, concepts):
        self.concepts = concepts

    def resolve(self, text):
        if text not in self.concepts:
            raise UnknownTermError(f"unknown {text!r}")
        return self.concepts[text]

    def search(self, text, k=10):
        return [(c, 0.5) for cid, c in sorted(self.concepts.items()) if cid.startswith(text[:3])][:k]


def test_rank_by_tree_and_by_encoder(tiny_tree, base_encoder):
    queries = [Query("liver", frozenset({"liver"})), Query("kidnay", frozenset({"kidney"})), Query("zzz", frozenset({"spleen"}))]
    ranking = rank_by_tree(_StringTree(tiny_tree), queries)
    assert ranking.topk(1)[0] == ["liver"] and ranking.topk(5)[2] == []
    assert "kidney" in ranking.topk(5)[1]
    assert recall(ranking, queries, 5) == pytest.approx(2 / 3)
    assert ranking.prefers(2, "spleen", "liver") is None  # string matching: no opinion without a hit
    encoded = rank_by_encoder(base_encoder.encode, tiny_tree, queries[:1])
    assert encoded.topk(1) == [["liver"]] and encoded.scores.shape == (1, len(tiny_tree))


def test_throughput_is_prompts_per_second_of_the_fastest_repeat(monkeypatch):
    """Measured on a fake clock: the wall-clock figures belong to benchmarks/text_retrieval.py."""
    import sat.text.retrieval as retrieval

    ticks = iter([0.0, 0.5, 1.0, 1.25, 2.0, 2.4])  # three repeats: 0.5 s, 0.25 s, 0.4 s
    monkeypatch.setattr(retrieval, "time", SimpleNamespace(perf_counter=lambda: next(ticks)))
    seen = []
    assert throughput(seen.append, ["liver", "spleen"], repeats=3) == pytest.approx(8.0)
    assert seen == [["liver", "spleen"]] * 3
