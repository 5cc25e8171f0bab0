"""Pair builder: held-out synonyms never trained on, views, hard negatives; loss and recall helpers."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
import torch

from sat.text.module import multi_positive_infonce, recall_at
from sat.text.pairs import build_pairs, norm, serial_siblings, split_synonyms


def test_held_out_fraction_and_determinism(tiny_tree):
    train, held = split_synonyms(tiny_tree, fraction=0.15, seed=0)
    names = {norm(c.name) for c in tiny_tree.values()}
    candidates = {(cid, norm(s)) for cid, c in tiny_tree.items() for s in c.synonyms if norm(s) not in names}
    assert 0 < len(held) < 0.4 * len(candidates)
    more = {**tiny_tree, "liver": replace(tiny_tree["liver"], synonyms=(*tiny_tree["liver"].synonyms, "jecur", "hepatic gland"))}
    assert set(held) <= set(split_synonyms(more, fraction=0.15, seed=0)[1])  # stable when the tree grows
    shuffled = dict(random.Random(1).sample(sorted(tiny_tree.items()), len(tiny_tree)))
    assert split_synonyms(shuffled, fraction=0.15, seed=0)[1] == held  # independent of order
    assert split_synonyms(tiny_tree, fraction=0.15, seed=1)[1] != held  # the seed chooses
    for cid, synonym in held:
        assert norm(synonym) not in {norm(s) for s in train[cid]}


def test_held_out_synonyms_never_in_training_views(tiny_tree):
    pairs = build_pairs(tiny_tree, fraction=0.3, seed=0)
    held = {norm(s) for _, s in pairs.held_out}
    assert held
    training = {norm(t) for t in pairs.texts()} | {norm(p) for pair in pairs.positive_pairs() for p in pair[:2]}
    assert not held & training


def test_views_cover_every_kind(tiny_tree):
    pairs = build_pairs(tiny_tree, fraction=0.0)
    views = pairs.views["kidney_left"]
    assert views[0].text == "left kidney" and views[0].kind == "name"
    texts = {v.kind: v.text for v in views}
    assert texts["definition"].startswith("The kidney on the left")
    assert "the left kidney is a kidney" in [v.text for v in views]
    assert {"kidney_left", "synonym"} <= {v.text for v in views} | {v.kind for v in views}
    urinary = [v.text for v in pairs.views["kidney"] if v.kind == "relation"]
    assert urinary == ["the kidney is part of the urinary system"]
    assert ("left kidney", "ren sinister", "synonym") in set(pairs.positive_pairs())


def test_hard_negatives_other_side_then_siblings(tiny_tree):
    negatives = build_pairs(tiny_tree).hard_negatives
    assert negatives["kidney_left"][0] == "kidney_right" and "kidney" in negatives["kidney_left"]
    assert set(negatives["vertebrae_l3"][:2]) == {"vertebrae_l2", "vertebrae_l4"}
    assert "lumbar_vertebra" in negatives["vertebrae_l3"]
    assert "kidney_left" in negatives["kidney"] and "urinary_system" in negatives["kidney"]
    assert serial_siblings("vertebrae_l3", tiny_tree)[:2] == ["vertebrae_l2", "vertebrae_l4"]
    assert serial_siblings("liver", tiny_tree) == []


def test_multi_positive_infonce_prefers_aligned_embeddings():
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    centers = torch.nn.functional.normalize(torch.randn(3, 16, generator=torch.Generator().manual_seed(0)), dim=-1)
    aligned = centers[labels]
    shuffled = torch.nn.functional.normalize(torch.randn(6, 16, generator=torch.Generator().manual_seed(1)), dim=-1)
    good = multi_positive_infonce(aligned, labels, temperature=0.1)
    bad = multi_positive_infonce(shuffled, labels, temperature=0.1)
    assert good < bad
    lone = multi_positive_infonce(aligned, torch.tensor([0, 0, 1, 1, 2, 3]), temperature=0.1)
    assert torch.isfinite(lone)  # anchors without positives are skipped


def test_recall_at():
    names = torch.eye(3)
    queries = torch.tensor([[1.0, 0.1, 0.0], [0.0, 0.2, 1.0], [0.9, 1.0, 0.0]])
    labels = torch.tensor([0, 1, 0])
    assert recall_at(names, queries, labels, 1) == pytest.approx(1 / 3)
    assert recall_at(names, queries, labels, 2) == pytest.approx(1.0)
