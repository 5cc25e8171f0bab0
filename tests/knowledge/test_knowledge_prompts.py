"""plan_prompts: trained concepts, unions (complete or partial) and the untrained-prompt policy."""

from __future__ import annotations

import pytest

import sat.knowledge as sk
from sat.errors import InputError, UntrainedPromptError
from sat.knowledge.prompts import plan_prompts

TRAINED = {"liver", "kidney_left", "kidney_right", "lung_lower_lobe_left", "lung_lower_lobe_right", "vertebrae_l1",
           "vertebrae_l2", "vertebrae_l3", "vertebrae_l4", "vertebrae_l5", "hip_left"}


@pytest.fixture(scope="module")
def tree() -> sk.KnowledgeTree:
    return sk.load()


def test_trained_concepts_and_complete_unions(tree: sk.KnowledgeTree) -> None:
    liver, kidneys, right = plan_prompts(tree, ["liver", "kidneys", "rtkidney"], TRAINED)
    assert (liver.kind, liver.members, liver.texts, liver.matched) == ("concept", ("liver",), ("liver",), "id")
    assert kidneys.kind == "union" and kidneys.members == ("kidney_left", "kidney_right") and kidneys.missing == ()
    assert kidneys.texts == ("left kidney", "right kidney")
    assert (right.concept.id, right.kind, right.matched) == ("kidney_right", "concept", "laterality")


def test_a_partial_union_segments_what_was_trained_and_names_what_is_left_out(tree: sk.KnowledgeTree) -> None:
    lung, hips, lumbar = plan_prompts(tree, ["lungs", "hips", "lumbar vertebrae"], TRAINED)
    assert lung.kind == "union" and lung.members == ("lung_lower_lobe_left", "lung_lower_lobe_right")
    assert {"lung_upper_lobe", "lung_middle_lobe_right"} <= set(lung.missing)
    assert not set(lung.missing) & {"lung_left", "lung_right", "lung_lower_lobe"}  # partly covered: not "left out"
    assert "partial" in lung.note and "lung_upper_lobe" in lung.note
    assert hips.members == ("hip_left",) and hips.missing == ("hip_right",)
    assert lumbar.members == tuple(f"vertebrae_l{i}" for i in range(1, 6)) and lumbar.missing == ("vertebrae_l6",)


def test_untrained_and_unknown_prompts_follow_the_policy(tree: sk.KnowledgeTree) -> None:
    with pytest.raises(UntrainedPromptError) as info:
        plan_prompts(tree, ["liver", "brain", "zzqx blorp"], TRAINED, model="model 'm'")
    message = str(info.value)
    assert "'brain' (brain) is not a concept model 'm' was trained on" in message and "\n" not in message
    assert set(info.value.by_prompt) == {"brain", "zzqx blorp"} and info.value.suggestions == info.value.by_prompt["brain"]
    names = {tree[c].name for c in TRAINED}
    assert all(set(s) <= names and len(s) == 3 for s in info.value.by_prompt.values())
    brain, blorp = plan_prompts(tree, ["brain", "zzqx blorp"], TRAINED, on_untrained="empty")
    assert (brain.kind, brain.texts, brain.concept.id) == ("empty", (), "brain")
    assert (blorp.kind, blorp.concept, blorp.matched) == ("empty", None, "none")
    brain, blorp = plan_prompts(tree, ["brain", "zzqx blorp"], TRAINED, on_untrained="text")
    assert (brain.kind, brain.texts, blorp.texts) == ("text", ("brain",), ("zzqx blorp",))
    assert "unvalidated" in brain.note
    with pytest.raises(InputError, match="on_untrained must be one of"):
        plan_prompts(tree, ["liver"], TRAINED, on_untrained="silent")


def test_a_model_that_does_not_list_its_concepts_answers_every_resolved_concept(tree: sk.KnowledgeTree) -> None:
    (brain,) = plan_prompts(tree, ["brain"], ())
    assert brain.kind == "concept" and brain.members == ("brain",)
    with pytest.raises(UntrainedPromptError, match="not a knowledge-tree term"):
        plan_prompts(tree, ["zzqx blorp"], ())
