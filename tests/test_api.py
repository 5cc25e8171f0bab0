"""sat.segment / load_model / Segmenter with a tiny random model saved to a temporary folder."""

from __future__ import annotations

import gc
import json
import re
import weakref

import numpy as np
import pytest
import torch

import sat
import sat.model
from sat import api, io, preprocess
from sat.errors import InputError, UntrainedPromptError
from sat.knowledge.prompts import check_prompts

CONCEPTS = ["liver", "spleen", "kidney_left", "kidney_right", "aorta"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tiny_model):
    return tiny_model(tmp_path_factory.mktemp("tiny"), CONCEPTS)


# -- prompts -------------------------------------------------------------------------------
def test_prompt_checks():
    assert check_prompts("liver") == ["liver"]
    assert check_prompts(["  left   kidney ", "liver"]) == ["left kidney", "liver"]
    for bad, match in [("", "empty prompt"), ("   ", "empty prompt"), ([], "no prompt"), (None, "no prompt"),
                       (["liver", "liver"], "twice"), ([3], "strings")]:
        with pytest.raises(InputError, match=match):
            check_prompts(bad)


def test_plan_resolves_concepts_parents_and_free_text(segmenter):
    liver, kidneys, left, free = segmenter.plan(["liver", "kidneys", "kidney, left", "zzqx blorp"], on_untrained="text")
    assert (liver.kind, liver.concept.id, liver.members) == ("concept", "liver", ("liver",))
    assert kidneys.kind == "union" and set(kidneys.members) == {"kidney_left", "kidney_right"}
    assert kidneys.missing == () and "union of 2" in kidneys.note
    assert left.concept.id == "kidney_left" and left.kind == "concept" and left.matched == "exact"
    assert free.concept is None and free.kind == "text" and free.texts == ("zzqx blorp",)
    by_id = segmenter.plan("kidney_right")[0]  # concept ids are accepted as prompts (used by --all)
    assert by_id.concept.id == "kidney_right" and by_id.matched == "id"
    glued = segmenter.plan("rtkidney")[0]  # a side glued to the word is kept, never dropped
    assert glued.concept.id == "kidney_right" and glued.matched == "laterality"


def test_untrained_prompts_raise_one_line_naming_trained_concepts(segmenter, phantom, monkeypatch):
    monkeypatch.setattr(sat.model, "predict", lambda *a, **k: pytest.fail("no inference for a refused prompt"))
    with pytest.raises(UntrainedPromptError) as info:
        segmenter.segment(phantom.image, ["liver", "brain", "left femur", "zzqx blorp"])
    message = str(info.value)
    assert "\n" not in message and "liver" not in message.split("(nearest")[0]
    assert "'brain' (brain) is not a concept model" in message and "'zzqx blorp' is not a knowledge-tree term" in message
    assert "on_untrained='empty'" in message and "--on-untrained" in message
    trained_names = {sat.knowledge.load()[c].name for c in CONCEPTS}
    assert set(info.value.by_prompt) == {"brain", "left femur", "zzqx blorp"}
    assert all(s and set(s) <= trained_names for s in info.value.by_prompt.values())
    assert info.value.by_prompt["left femur"][0] == "left kidney"  # same side first
    assert isinstance(info.value, sat.errors.UnknownTermError)  # callers catching unknown terms still do


def test_on_untrained_policies_empty_and_text(segmenter, phantom, monkeypatch, caplog, tmp_path):
    everywhere = lambda model, image, queries, **kw: torch.full((queries.shape[0], *image.shape[-3:]), 5.0)  # noqa: E731
    monkeypatch.setattr(sat.model, "predict", everywhere)
    with caplog.at_level("WARNING", logger="sat.api"):
        empty = segmenter.segment(phantom.image, ["liver", "brain", "zzqx blorp"], on_untrained="empty")
    assert empty.voxels("liver") == phantom.image.array.size
    assert empty.voxels("brain") == 0 and empty.voxels("zzqx blorp") == 0 and not (empty.labelmap > 1).any()
    kinds = [(lab.kind, lab.concept, lab.matched) for lab in empty.labels.values()]
    assert kinds == [("concept", "liver", "id"), ("empty", "brain", "id"), ("empty", None, "none")]
    assert "empty mask" in empty.labels[2].note and empty.meta["on_untrained"] == "empty"
    assert any("empty mask" in r.getMessage() and "'brain'" in r.getMessage() for r in caplog.records)
    saved = json.loads((empty.save(tmp_path / "out") / "labels.json").read_text())
    assert saved["on_untrained"] == "empty" and [x["kind"] for x in saved["labels"]] == ["concept", "empty", "empty"]
    assert saved["labels"][1]["note"] == empty.labels[2].note
    text = segmenter.segment(phantom.image, ["brain", "zzqx blorp"], on_untrained="text")
    assert [lab.kind for lab in text.labels.values()] == ["text", "text"]
    assert text.voxels("brain") == phantom.image.array.size  # the model's free-text answer, kept as asked
    only_empty = segmenter.segment(phantom.image, "brain", on_untrained="empty")  # nothing to predict
    assert only_empty.voxels("brain") == 0 and only_empty.shape == phantom.image.shape
    with pytest.raises(InputError, match="on_untrained must be one of"):
        segmenter.segment(phantom.image, "liver", on_untrained="ignore")


def test_modality_pet_reaches_the_text_queries(segmenter, phantom, monkeypatch):
    seen = []
    real = segmenter.queries
    monkeypatch.setattr(segmenter, "queries", lambda texts, modality: seen.append(modality) or real(texts, modality))
    seg = segmenter.segment(phantom.image, "liver", modality="pet")  # CT values: only the argument says PET
    assert seen == ["pet"] and seg.modality == "pet"
    assert not torch.allclose(real(["liver"], "pet"), real(["liver"], "ct"))  # the modality changes the query


def test_free_text_prompts_are_reported_in_one_warning_each_kind(segmenter, caplog):
    with caplog.at_level("WARNING", logger="sat.api"):
        segmenter.plan(["liver", "brain", "left femur", "zzqx blorp", "qqzz plorb"], on_untrained="text")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert lines[0].startswith("2 prompt(s) not in the knowledge tree") and "'qqzz plorb'" in lines[0]
    assert lines[1].startswith("2 prompt(s) name concepts this model was not trained on")
    assert "'left femur' (femur_left)" in lines[1] and "liver" not in lines[1]


def test_query_cache(segmenter, monkeypatch):
    calls = []
    real = segmenter.text_encoder.encode
    monkeypatch.setattr(segmenter.text_encoder, "encode", lambda texts, **kw: calls.append(list(texts)) or real(texts, **kw))
    q1 = segmenter.queries(["cache probe a", "cache probe b"], "ct")
    q2 = segmenter.queries(["cache probe b", "cache probe a", "cache probe a"], "ct")
    segmenter.queries(["cache probe a"], "mr")
    assert calls == [["cache probe a", "cache probe b"], ["cache probe a"]]
    assert q1.shape == (2, segmenter.text_encoder.dim) and q2.shape[0] == 3
    torch.testing.assert_close(q1[0], q2[1])


# -- segmentation ----------------------------------------------------------------------------
def test_segment_from_a_file_equals_the_pipeline_done_by_hand(segmenter, phantom, tmp_path):
    """Reading the file, standardizing, one query per member, threshold, union and inversion: nothing else."""
    path = io.save(phantom.image, tmp_path / "ct.nii.gz")
    volume = io.load(path)
    intensity = segmenter.config.get("intensity")
    image, record = preprocess.standardize(volume, spacing=segmenter.spacing, ct_scale=preprocess.ct_scale_of(intensity),
                                           ct_window=preprocess.ct_window_of(intensity))
    names = ["liver", "left kidney", "right kidney"]
    logits = sat.model.predict(segmenter.model, image[None], segmenter.queries(names, "ct")).numpy()
    cut = float(np.quantile(logits, 0.6))  # a threshold that keeps a good part of every map
    threshold = float(1 / (1 + np.exp(-cut)))
    seg = segmenter.segment(path, ["liver", "kidneys"], threshold=threshold, largest_component=False)
    expected = {"liver": logits[0] > cut, "kidneys": (logits[1] > cut) | (logits[2] > cut)}
    for prompt, model_mask in expected.items():
        want = preprocess.invert(model_mask, record, mode="nearest")
        assert want.any() and not want.all()
        np.testing.assert_array_equal(seg[prompt], want)
    np.testing.assert_allclose(seg.affine, phantom.image.affine, atol=1e-4)
    assert [(lab.concept, lab.kind) for lab in seg.labels.values()] == [("liver", "concept"), ("kidney", "union")]
    assert seg.modality == "ct" and seg.meta["model"] == segmenter.name
    assert seg.image is None and seg.overlay_png(tmp_path / "overlay.png").is_file()  # from the kept planes


def test_a_union_is_the_union_of_its_members_segmented_alone(segmenter, monkeypatch):
    """The component rule applies to each member of a union exactly as to the member alone."""
    boxes = {  # query text -> [(box as fractions of the model grid, logit)]; the left kidney in two pieces
        "left kidney": [(((0.1, 0.4), (0.1, 0.4), (0.1, 0.4)), 4.0), (((0.7, 0.9), (0.7, 0.9), (0.7, 0.9)), 3.0)],
        "right kidney": [(((0.5, 0.8), (0.1, 0.4), (0.1, 0.4)), 2.0)],
    }

    def fake(model, image, queries, **kwargs):
        shape = image.shape[-3:]
        out = torch.full((queries.shape[0], *shape), -8.0)
        for i, q in enumerate(queries):
            for text, pieces in boxes.items():
                if torch.allclose(q, segmenter.queries([text], "ct")[0]):
                    for box, logit in pieces:
                        out[i][tuple(slice(int(a * n), int(b * n)) for (a, b), n in zip(box, shape, strict=True))] = logit
        return out

    monkeypatch.setattr(sat.model, "predict", fake)
    monkeypatch.setitem(segmenter.config, "postprocess", {"largest_component": {"kidney_left": 1, "kidney_right": 1}})
    volume = io.load((np.random.default_rng(0).normal(0, 100, (60, 50, 40)).astype(np.float32), np.eye(4) * 4),
                     modality="ct")
    left = segmenter.segment(volume, "left kidney")["left kidney"]
    right = segmenter.segment(volume, "right kidney")["right kidney"]
    union = segmenter.segment(volume, ["kidneys", "spleen"])
    from sat.postprocess import components

    assert components(left) == 1 and left.any() and right.any()  # the smaller piece was dropped
    np.testing.assert_array_equal(union["kidneys"], left | right)
    assert union.voxels("kidneys") == int((left | right).sum())
    assert union.meta["largest_component"] == ["kidneys"]
    assert np.array_equal(union.labelmap == 1, left | right)  # the dropped piece is not labelled either


def test_the_result_does_not_keep_the_input_alive(segmenter, phantom):
    array = phantom.image.array.copy()
    alive = weakref.ref(array)
    seg = segmenter.segment((array, phantom.image.affine), "liver", modality="ct")
    del array
    gc.collect()
    assert alive() is None and seg.image is None
    assert seg.labelmap.shape == phantom.image.shape and seg.labelmap.dtype == np.uint8


def _fake_predict(segmenter, regions):
    """predict() stand-in: each query text gets a fixed logit inside a box of the model grid."""

    def fake(model, image, queries, **kwargs):
        shape = image.shape[-3:]
        out = torch.full((queries.shape[0], *shape), -8.0)
        for i, q in enumerate(queries):
            for text, (box, logit) in regions.items():
                if torch.allclose(q, segmenter.queries([text], "ct")[0].to(q.device)):
                    out[i][tuple(slice(int(a * n), int(b * n)) for (a, b), n in zip(box, shape, strict=True))] = logit
        return out

    return fake


@pytest.mark.parametrize("intensity, ct_scale", [
    (None, preprocess.CT_SCALE),                                   # no description: the current default
    ({"ct": "clip [-500, 1000] HU, z-score over body voxels"}, None),  # older models: per-scan z-score
    ({"ct": {"mean": 10.0, "std": 50.0}}, (10.0, 50.0)),
])
def test_ct_images_are_scaled_as_the_model_was_trained(model_dir, monkeypatch, intensity, ct_scale):
    seen = []

    def capture(model, image, queries, **kwargs):
        seen.append(image.clone())
        return torch.full((queries.shape[0], *image.shape[-3:]), -8.0)

    segmenter = api.load_model(model_dir, device="cpu")
    segmenter.config = {**segmenter.config, "intensity": intensity}
    monkeypatch.setattr(sat.model, "predict", capture)
    volume = io.load((np.random.default_rng(1).normal(0, 200, (20, 20, 10)).astype(np.float32), np.eye(4) * 3),
                     modality="ct")
    segmenter.segment(volume, "liver")
    expected, _ = preprocess.standardize(volume, spacing=segmenter.spacing, ct_scale=ct_scale)
    torch.testing.assert_close(seen[0][0], expected)


def test_union_labelmap_and_inversion_are_exact(segmenter, monkeypatch):
    regions = {  # query text -> (box as fractions of the model grid, logit)
        "liver": (((0.1, 0.6), (0.2, 0.8), (0.2, 0.7)), 2.0),
        "left kidney": (((0.5, 0.8), (0.5, 0.9), (0.1, 0.5)), 5.0),
        "right kidney": (((0.0, 0.3), (0.0, 0.5), (0.6, 0.9)), 1.0),
    }
    monkeypatch.setattr(sat.model, "predict", _fake_predict(segmenter, regions))
    affine = np.array([[0, 0, -2.5, 80], [-1.7, 0, 0, 30], [0, 4.0, 0, -20], [0, 0, 0, 1]])  # permuted, flipped
    volume = io.load((np.random.default_rng(0).normal(0, 100, (40, 30, 50)).astype(np.float32), affine),
                     modality="ct")
    seg = segmenter.segment(volume, ["liver", "left kidney", "kidneys"])
    _, record = preprocess.standardize(volume, spacing=segmenter.spacing)
    expected = {}
    for text, (box, _) in regions.items():
        model_mask = np.zeros(record.model_shape, bool)
        model_mask[tuple(slice(int(a * n), int(b * n)) for (a, b), n in zip(box, record.model_shape, strict=True))] = True
        expected[text] = preprocess.invert(model_mask, record, mode="nearest")
    np.testing.assert_array_equal(seg["liver"], expected["liver"])
    np.testing.assert_array_equal(seg["left kidney"], expected["left kidney"])
    np.testing.assert_array_equal(seg["kidneys"], expected["left kidney"] | expected["right kidney"])
    # overlaps go to the most probable prompt; ties keep the earlier prompt
    lm = seg.labelmap
    assert np.all(lm[expected["left kidney"]] == 2)
    assert np.all(lm[expected["liver"] & ~expected["left kidney"]] == 1)
    right, liver = expected["right kidney"], expected["liver"]
    assert (right & liver).any() and np.all(lm[right & liver] == 1)  # logit 2 beats 1
    assert np.all(lm[right & ~liver] == 3) and (lm == 3).sum() == (right & ~liver).sum()
    assert np.all((lm > 0) == (expected["liver"] | expected["left kidney"] | expected["right kidney"]))
    assert seg.voxels("kidneys") == int((expected["left kidney"] | expected["right kidney"]).sum())


def test_presence_gating_can_be_turned_off(model_dir, phantom):
    segmenter = api.load_model(model_dir, device="cpu")
    head = segmenter.model.presence_head[-1]
    with torch.no_grad():
        head.weight.zero_()
        head.bias.fill_(-10.0)  # the presence head calls every prompt absent everywhere
    gated = segmenter.segment(phantom.image, ["liver"], threshold=0.001)
    ungated = segmenter.segment(phantom.image, ["liver"], threshold=0.001, presence_gating=False)
    assert gated.voxels("liver") == 0 and gated.meta["presence_gating"] is True
    assert ungated.voxels("liver") > 0 and ungated.meta["presence_gating"] is False
    # presence probability 4.5e-5: only a threshold below it lets the windows keep the prompt
    kept = segmenter.segment(phantom.image, ["liver"], threshold=0.001, presence_veto=1e-5)
    assert kept.voxels("liver") == ungated.voxels("liver") and kept.meta["presence_veto"] == 1e-5
    with pytest.raises(InputError, match="presence_veto"):
        segmenter.segment(phantom.image, ["liver"], presence_veto=0.0)


def test_segmenter_applies_the_models_component_rule_unless_told_not_to(model_dir, phantom):
    from sat.postprocess import components

    segmenter = sat.load_model(model_dir, device="cpu")
    segmenter.config = {**segmenter.config, "postprocess": {"largest_component": {"liver": 1}}}
    kept = segmenter.segment(phantom.image, ["liver", "spleen"])
    assert kept.meta["largest_component"] == ["liver"]
    assert components(np.asarray(kept["liver"])) <= 1
    every = segmenter.segment(phantom.image, ["liver", "spleen"], largest_component=False)
    assert every.meta["largest_component"] == []
    assert np.asarray(kept["liver"]).sum() <= np.asarray(every["liver"]).sum()
    np.testing.assert_array_equal(np.asarray(kept["spleen"]), np.asarray(every["spleen"]))
    segmenter.config["postprocess"]["largest_component"]["liver"] = 10_000  # deeper than this input
    assert segmenter.segment(phantom.image, ["liver"]).meta["largest_component"] == []


# -- inputs thinner than the model needs ----------------------------------------------------------
def _slab(phantom, box):
    """A sub-volume of the phantom with its own (shifted) affine."""
    start = np.array([b.indices(n)[0] for b, n in zip(box, phantom.image.shape, strict=True)], dtype=float)
    affine = phantom.image.affine.copy()
    affine[:3, 3] = phantom.image.affine[:3, :3] @ start + phantom.image.affine[:3, 3]
    return io.Volume(phantom.image.array[box].copy(), affine, modality="ct")


def test_thin_slab_is_segmented_with_a_warning_in_the_log_and_the_meta(segmenter, phantom, caplog, tmp_path):
    whole = segmenter.segment(phantom.image, "liver")
    assert whole.meta["warnings"] == []
    middle = phantom.image.shape[2] // 2
    slab = _slab(phantom, (slice(None), slice(None), slice(middle, middle + 4)))  # 24 mm: 2 model voxels of 12
    with caplog.at_level("WARNING", logger="sat.api"):
        seg = segmenter.segment(slab, "liver")
    assert seg.shape == slab.shape
    [note] = seg.meta["warnings"]
    assert "24.0 mm along its superior-inferior axis" in note and "under a quarter of its 32-voxel window" in note
    assert note in caplog.text
    labels = json.loads((seg.save(tmp_path / "out") / "labels.json").read_text())
    assert labels["warnings"] == [note]


@pytest.mark.parametrize(("box", "axis", "need"), [
    ((slice(None), slice(None), slice(20, 22)), "superior-inferior", "give at least 3 slices (18.0 mm)"),
    ((slice(30, 32), slice(None), slice(None)), "left-right", "give at least 3 slices (18.0 mm)"),
])
def test_a_slab_the_model_would_see_as_a_plane_is_refused(segmenter, phantom, box, axis, need):
    with pytest.raises(InputError, match=rf"12\.0 mm along its {axis} axis.*single plane; {re.escape(need)}") as err:
        segmenter.segment(_slab(phantom, box), "liver")
    assert "\n" not in str(err.value)
    for image in [(np.zeros((40, 40)), np.eye(4)), (np.zeros((40, 40, 1)), np.eye(4))]:  # 2D: refused on load
        with pytest.raises(InputError, match="2D image"):
            segmenter.segment(image, "liver")


def test_tilted_dicom_series_is_segmented_on_its_corrected_grid(segmenter, tmp_path):
    from dicomfixtures import sphere, tilted, write_series

    iop = tilted(20.0)
    table = np.array([0.0, 0.0, 6.0 / np.cos(np.radians(20.0))])
    origins = [np.array([-60.0, -50.0, -40.0]) + k * table for k in range(16)]
    write_series(tmp_path / "dcm", origins, lambda w: sphere(w.mean((0, 1)), 30.0, (3.0, 3.0, 6.0), iop)(w) - 1000,
                 orientation=iop, pixel=(3.0, 3.0), shape=(40, 40))
    seg = segmenter.segment(tmp_path / "dcm", "liver")
    volume = io.load(tmp_path / "dcm")
    assert seg.shape == volume.shape and np.allclose(seg.affine, volume.affine)
    assert not io.is_sheared(seg.affine)
    assert "gantry tilt 20.0 degrees" in seg.meta["warnings"][0]
