"""The original SAT vocabulary mapped onto the knowledge tree (per modality)."""

from __future__ import annotations

import json
from collections import Counter

import pytest

import sat.knowledge as sk
from sat.errors import ConfigError
from sat.knowledge.vocabulary import official_vocabulary


def _write(tmp_path, data) -> object:
    path = tmp_path / "terminology_list.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_names_resolve_per_modality_and_the_most_used_name_wins(tmp_path, caplog):
    path = _write(tmp_path, {"all": ["ct_hepatic", "ct_liver", "mri_liver", "pet_left kidney", "ct_no such thing",
                                     "xray_liver"],
                             "dataset_based": {"a": ["ct_liver"], "b": ["ct_liver", "mri_liver"]}})
    vocab = official_vocabulary(path)
    assert vocab == {"ct": {"liver": "liver"}, "mr": {"liver": "liver"}, "pet": {"kidney_left": "left kidney"}}
    assert "2 original class name(s) not mapped" in caplog.text


def test_ties_keep_the_first_listed_name(tmp_path):
    vocab = official_vocabulary(_write(tmp_path, {"all": ["ct_kidney, left", "ct_left kidney"]}))
    assert vocab["ct"] == {"kidney_left": "kidney, left"}


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        official_vocabulary(tmp_path / "missing.json")
    with pytest.raises(ConfigError, match="key 'all'"):
        official_vocabulary(_write(tmp_path, {"names": []}))


@pytest.mark.realdata
def test_all_498_original_names_map_onto_concepts(shared_terms):
    path = shared_terms / "sat" / "terminology_list.json"
    names = json.loads(path.read_text(encoding="utf-8"))["all"]
    vocab = official_vocabulary(path)
    tree = sk.load()
    per_modality = Counter({"ct": 0, "mr": 0, "pet": 0})
    for item in names:
        prefix, _, name = item.partition("_")
        per_modality[{"mri": "mr"}.get(prefix, prefix)] += 1
        concept = tree.resolve(name)
        assert concept.id in vocab[{"mri": "mr"}.get(prefix, prefix)], item
    assert per_modality == Counter({"ct": 306, "mr": 189, "pet": 3})
    ct = vocab["ct"]
    for prompt in ("kidney, left", "lt kidney", "L kidney", "left kidney"):
        assert tree.resolve(prompt).id in ct
    assert ct[tree.resolve("lt kidney").id] == "left kidney"


@pytest.mark.realdata
def test_parents_are_unions_of_the_original_classes(shared_terms):
    import torch

    from sat.api import Segmenter

    vocab = official_vocabulary(shared_terms / "sat" / "terminology_list.json")
    concepts = sorted({c for names in vocab.values() for c in names})
    segmenter = Segmenter(torch.nn.Linear(1, 1), {"concepts": concepts}, text_encoder=None, device="cpu")
    plans = {p.prompt: p for p in segmenter.plan(["lumbar vertebrae", "caudate nucleus", "inner ear"])}
    assert plans["lumbar vertebrae"].kind == "concept"  # an original class of its own
    assert plans["caudate nucleus"].members == ("caudate_nucleus_left", "caudate_nucleus_right")
    assert plans["inner ear"].kind == "union" and set(plans["inner ear"].members) == {"cochlea",
                                                                                      "vestibule_semicircular_canal"}
    from sat.errors import UntrainedPromptError

    with pytest.raises(UntrainedPromptError, match="not a knowledge-tree term"):
        segmenter.plan(["a made-up organ"])  # outside the vocabulary: the untrained-prompt policy
    assert segmenter.plan(["a made-up organ"], on_untrained="text")[0].kind == "text"
