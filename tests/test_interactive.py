"""Points, boxes, refine and zoom with a tiny random model and a random prompt head (no accuracy claims)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from phantom import make_phantom

from sat import api, io, preprocess
from sat.errors import InputError
from sat.interactive import Guide, guides_for, region_of
from sat.interactive.concepts import score_concepts
from sat.interactive.merge import BRUSH
from sat.model.prompt_head import HEAD_FOLDER, PromptHead, save_head
from sat.postprocess import keep_components

CONCEPTS = ["liver", "spleen", "kidney_left", "kidney_right", "aorta"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tiny_model):
    folder = tiny_model(tmp_path_factory.mktemp("tiny"), CONCEPTS)  # 12 mm grid, 32-voxel windows
    torch.manual_seed(1)
    head = PromptHead.for_network(api.load_model(folder, device="cpu").model.config, features=(8, 8, 8, 8, 8, 8))
    torch.nn.init.constant_(head.unet.final_conv.bias, 30.0)  # a head that says "here" everywhere
    save_head(head, folder / HEAD_FOLDER, half=False)
    return folder


@pytest.fixture(scope="module")
def wide_phantom():
    """Twice the model's 384 mm window along each axis: a click's region is a part of it."""
    return make_phantom(spacing=(6.0, 6.0, 6.0), shape=(140, 130, 130), seed=0)


def _record(shape=(40, 40, 40), affine=None, spacing=2.0):
    vol = io.load((np.zeros(shape, np.float32), np.eye(4) if affine is None else affine), modality="ct")
    return preprocess.standardize(vol, spacing=spacing)[1]


# -- mapping points and boxes -------------------------------------------------------------------
def test_world_and_voxel_points_agree_on_a_flipped_grid():
    affine = np.diag([-1.5, 1.5, 2.0, 1.0])
    affine[:3, 3] = (30.0, -20.0, 5.0)
    record = _record(affine=affine)
    ijk = (10.0, 20.0, 30.0)
    world = tuple((affine @ np.array([*ijk, 1.0]))[:3])
    a = Guide.parse(record, points=[(*world, 1)], space="world").clicks
    b = Guide.parse(record, points=[(*ijk, 1)], space="voxel").clicks
    assert np.allclose(np.array(a)[:, :3], np.array(b)[:, :3])
    # model space is RAS: the flipped input x axis runs the other way there
    m = np.asarray(record.model_affine)
    assert np.allclose(m[:3, :3] @ np.array(a[0][:3]) + m[:3, 3], world)


@pytest.mark.parametrize("points,box,match", [
    ([(500.0, 0.0, 0.0, 1)], None, "outside the image"),
    ([(1.0, 2.0)], None, r"\(x, y, z\)"),
    ([(1.0, 2.0, 3.0, 2)], None, "label must be 1"),
    ([(1.0, float("nan"), 3.0)], None, "NaN"),
    (None, (0, 0, 0, 10, 10, 0), "no extent along z"),
    (None, (100, 100, 100, 120, 120, 120), "does not overlap"),
    (None, (1, 2, 3), "six finite numbers"),
])
def test_bad_points_and_boxes_get_one_line_errors(points, box, match):
    with pytest.raises(InputError, match=match) as err:
        Guide.parse(_record(), points=points, box=box, space="world")
    assert "\n" not in str(err.value)


def test_unknown_space_and_misassigned_guides_are_refused():
    with pytest.raises(InputError, match="space must be"):
        Guide.parse(_record(), points=[(1, 1, 1)], space="mm")
    with pytest.raises(InputError, match="dict prompt"):
        guides_for(["liver", "spleen"], _record(), points=[(1, 1, 1)], box=None, space="world")
    with pytest.raises(InputError, match="not among the prompts"):
        guides_for(["liver"], _record(), points={"spleen": [(1, 1, 1)]}, box=None, space="world")


def test_region_is_a_window_around_each_click_and_covers_the_box():
    guide = Guide(clicks=[(5.0, 5.0, 5.0, 1)], box=(20, 20, 20, 30, 30, 30))
    assert region_of(guide, (60, 60, 60), (16, 16, 16), clicks=guide.clicks) == (slice(0, 13),) * 3
    full = region_of(guide, (60, 60, 60), (16, 16, 16))
    assert all(s.start == 0 and s.stop >= 31 + 3 for s in full)
    assert region_of(Guide(), (60, 60, 60), (16, 16, 16)) is None


def test_a_box_is_read_as_the_structure_it_surrounds_even_drawn_loose():
    probs = np.zeros((3, 60, 60, 60), np.float32)
    probs[0, 10:50, 10:50, 10:50] = 0.9  # a large organ
    probs[1, 20:32, 20:32, 20:32] = 0.9  # a 12-voxel structure inside it
    probs[1, 55, 55, 55] = 0.9  # a stray false-positive voxel of that structure
    probs[2, 19:33, 19:33, 19:33] = 0.9  # a thin shell around the small structure, with about its box
    probs[2, 20:32, 20:32, 20:32] = 0.0
    for margin in (0, 3):  # tight, then 3 voxels loose on every side
        box = (20 - margin, 20 - margin, 20 - margin, 31 + margin, 31 + margin, 31 + margin)
        scores = score_concepts(probs, Guide(box=box), (0, 0, 0))
        assert scores.agree().tolist() == [False, True, margin > 0]  # the loose box holds the shell as well...
        assert scores.best() == 1  # ...but the structure fills the box
    lesion = score_concepts(probs, Guide(box=(25, 36, 25, 29, 40, 29)), (0, 0, 0))  # a lesion in the organ
    assert not lesion.agree().any() and lesion.best() is None
    shifted = score_concepts(probs[:, 10:], Guide(box=(20, 20, 20, 31, 31, 31)), (10, 0, 0))  # a region's offset
    assert shifted.overlap[1] > 0.9 and shifted.fill[1] > 0.9
    clicked = score_concepts(probs, Guide(clicks=[(25.0, 25.0, 25.0, 1), (45.0, 45.0, 45.0, 0)]), (0, 0, 0))
    assert clicked.agree().tolist() == [False, True, False] and clicked.overlap is None


def test_keep_components_keeps_seeded_pieces_and_the_largest():
    mask = np.zeros((20, 20, 20), bool)
    mask[1:4, 1:4, 1:4] = True  # small, seeded
    mask[10:18, 10:18, 10:18] = True  # largest
    mask[1:3, 15:18, 1:3] = True  # small, not seeded
    kept = keep_components(mask, [(2, 2, 2)], largest=True)
    assert kept[2, 2, 2] and kept[12, 12, 12] and not kept[2, 16, 2]
    assert not keep_components(mask, [(2, 2, 2)], largest=False)[12, 12, 12]


def test_a_negative_click_cannot_remove_the_confident_core_far_from_it():
    """A head that drops the whole structure after a negative click in a leak removes the unsure
    leak and the voxels near the click, never the sure core far away."""
    from sat.interactive.merge import NEAR, REMOVE_WITHIN, SURE, apply_guide

    auto = torch.full((30, 30, 30), -8.0)
    auto[2:14, 2:14, 2:14] = SURE + 4.0  # the structure, sure
    auto[14:26, 6:10, 6:10] = 1.0  # a leak, unsure
    head = torch.full((30, 30, 30), -8.0)  # the head removes everything
    click = (20.0, 8.0, 8.0, 0)  # the whole leak lies within REMOVE_WITHIN of it
    out = apply_guide(auto, head, (slice(0, 30),) * 3, Guide(clicks=[click]), has_text=True, one_piece=True) > 0
    assert not out[14:26, 6:10, 6:10].any()  # the leak is gone
    assert out[2:14 - int(NEAR), 2:14, 2:14].all()  # the core stays
    near = apply_guide(auto, head, (slice(0, 30),) * 3, Guide(clicks=[(12.0, 8.0, 8.0, 0)]), has_text=True,
                       one_piece=True) > 0
    assert not near[12, 8, 8] and near[3, 3, 3]  # a click on the core removes its neighbourhood only
    long = torch.full((40, 10, 10), -8.0)
    long[:, 3:7, 3:7] = 1.0  # a long unsure structure the head drops whole
    out = apply_guide(long, torch.full_like(long, -8.0), (slice(0, 40), slice(0, 10), slice(0, 10)),
                      Guide(clicks=[(5.0, 5.0, 5.0, 0)]), has_text=True, one_piece=False) > 0
    assert not out[5:5 + int(REMOVE_WITHIN) - 1, 5, 5].any() and out[5 + int(REMOVE_WITHIN) + 1:, 5, 5].all()


def test_a_positive_click_takes_the_head_blob_just_beside_it():
    """The head may answer a click a voxel or two off it: that piece is taken, a farther one is not."""
    from sat.interactive.merge import REACH, apply_guide

    auto = torch.full((30, 30, 30), -8.0)
    auto[2:8, 2:8, 2:8] = 8.0
    head = auto.clone()
    head[20:24, 20:24, 20:24] = 5.0  # the answer, its nearest voxel 2 voxels from the click
    head[2:5, 25:28, 25:28] = 5.0  # an unrelated blob far away
    out = apply_guide(auto, head, (slice(0, 30),) * 3, Guide(clicks=[(18.0, 21.0, 21.0, 1)]), has_text=True,
                      one_piece=False) > 0
    assert REACH >= 2 and out[20:24, 20:24, 20:24].all() and not out[2:5, 25:28, 25:28].any()


def test_a_click_the_head_ignores_still_fixes_the_ball_around_it():
    """A confident mistake the head does not overturn: each click sets its own ball anyway, the later
    click wins where balls overlap, and nothing beyond the balls changes."""
    from sat.interactive.merge import apply_guide

    auto = torch.full((30, 30, 30), -8.0)
    auto[2:20, 2:20, 2:20] = 8.0  # the mask, with a confident false part around (15, 15, 15)
    head = auto.clone()  # the head keeps everything as it was
    clicks = [(15.0, 15.0, 15.0, 0), (25.0, 25.0, 25.0, 1), (16.0, 15.0, 15.0, 1)]
    out = apply_guide(auto, head, (slice(0, 30),) * 3, Guide(clicks=clicks[:2]), has_text=True,
                      one_piece=False) > 0
    assert not out[15, 15, 15] and out[25, 25, 25]
    ball = np.linalg.norm(np.argwhere(out != (auto > 0).numpy()) - 15.0, axis=1)
    ball = np.minimum(ball, np.linalg.norm(np.argwhere(out != (auto > 0).numpy()) - 25.0, axis=1))
    assert ball.max() <= BRUSH and (out != (auto > 0)).sum() == 2 * 33  # two balls of radius 2
    later = apply_guide(auto, head, (slice(0, 30),) * 3, Guide(clicks=clicks), has_text=True, one_piece=False) > 0
    assert later[15, 15, 15] and not later[13, 15, 15]  # where the balls overlap the later click wins
    bridge = torch.full((30, 30, 30), -8.0)
    bridge[2:12, 5:25, 5:25], bridge[12:18, 14:16, 14:16], bridge[18:22, 5:25, 5:25] = 8.0, 8.0, 8.0
    cut = apply_guide(bridge, bridge.clone(), (slice(0, 30),) * 3, Guide(clicks=[(15.0, 15.0, 15.0, 0)]),
                      has_text=True, one_piece=True) > 0
    assert not cut[15, 15, 15] and cut[20, 10, 10] and cut[5, 10, 10]  # the ball cuts; both sides stay


def test_a_click_in_a_structure_the_text_missed_takes_the_answer_without_text():
    """Where the text confidently says "not here", a positive click also takes the piece the head
    draws without the text; where the text was only unsure, the text's answer alone counts."""
    from sat.interactive.merge import SURE, apply_guide, confident_misses

    auto = torch.full((30, 30, 30), -8.0)  # the text found nothing
    auto[2:6, 2:6, 2:6] = 8.0  # ... but a false piece far away
    text = auto.clone()
    text[19:22, 19:22, 19:22] = 2.0  # the head with text: a small blob at the click
    alone = torch.full((30, 30, 30), -5.0)
    alone[15:26, 15:26, 15:26] = 6.0  # without text: the structure around the click
    alone[2:4, 25:28, 25:28] = 6.0  # ... and a piece elsewhere, not taken
    click = Guide(clicks=[(20.0, 20.0, 20.0, 1), (3.0, 3.0, 3.0, 1)])
    assert confident_misses(auto, click.clicks) == click.clicks[:1]
    out = apply_guide(auto, text, (slice(0, 30),) * 3, click, has_text=True, one_piece=True, alone=alone) > 0
    assert out[15:26, 15:26, 15:26].all() and not out[2:4, 25:28, 25:28].any()
    assert out[2:6, 2:6, 2:6].all()  # the other clicked piece stays
    unsure = auto.clone()
    unsure[15:26, 15:26, 15:26] = -SURE + 1.0  # the text was only unsure there
    assert not confident_misses(unsure, click.clicks)
    out = apply_guide(unsure, text, (slice(0, 30),) * 3, click, has_text=True, one_piece=False, alone=alone) > 0
    assert out[19:22, 19:22, 19:22].all() and not out[15, 15, 15]


def test_the_answer_without_text_comes_from_the_same_network_pass(segmenter, phantom):
    """``also_alone`` adds the head's text-free answer as a second channel: the first is the plain
    answer, the second the answer of the same clicks without text."""
    from sat.interactive.guides import prompted_logits

    net, head = segmenter.model, segmenter.prompt_head
    image = segmenter.segment(phantom.image, "liver", modality="ct")._session.image  # model space
    guide = Guide(clicks=[(*(float(n // 2) for n in image.shape), 1), (1.0, 1.0, 1.0, 0)])
    region = tuple(slice(0, n) for n in image.shape)
    query = segmenter.queries(["liver"], "ct")[0]
    both = prompted_logits(net, head, image, query, guide, region, also_alone=True)
    assert both.shape == (2, *image.shape)
    torch.testing.assert_close(both[0], prompted_logits(net, head, image, query, guide, region))
    torch.testing.assert_close(both[1], prompted_logits(net, head, image, None, guide, region))


# -- segment with points and boxes -----------------------------------------------------------------
def _world_of(phantom, concept):
    value = next(v for v, c in phantom.concepts.items() if c == concept)
    ijk = np.argwhere(phantom.label.array == value).mean(0)
    return tuple((phantom.image.affine @ np.array([*ijk, 1.0]))[:3])


def test_refine_changes_only_the_windows_around_the_click(segmenter, wide_phantom):
    phantom = wide_phantom
    seg = segmenter.segment(phantom.image, ["liver", "spleen"], modality="ct")
    outside = np.argwhere(~seg["liver"])  # "the liver is here too", where its mask is not
    centre = np.argwhere(seg["liver"]).mean(0) if seg["liver"].any() else np.array(seg.shape) / 2
    ijk = outside[np.argmin(np.abs(outside - centre).sum(1))]
    click = tuple((phantom.image.affine @ np.array([*ijk, 1.0]))[:3])
    refined = seg.refine("liver", add=[click])
    assert np.array_equal(refined["spleen"], seg["spleen"])  # another prompt is untouched
    assert refined["liver"][tuple(ijk)]
    changed = np.argwhere(refined["liver"] != seg["liver"])
    world = changed @ phantom.image.affine[:3, :3].T + phantom.image.affine[:3, 3]
    reach = 16 * 12.0 * np.sqrt(3) + 12.0  # half a 32-voxel window of 12 mm, corner to corner, plus a voxel
    assert np.linalg.norm(world - np.array(click), axis=1).max() <= reach
    assert refined.meta["guided"]["liver"] == {"clicks": 1, "box": False}
    again = refined.refine("liver", remove=[click])  # clicks accumulate; this head never removes...
    assert again.meta["guided"]["liver"]["clicks"] == 2 and not again["liver"][tuple(ijk)]
    changed = np.argwhere(again["liver"] != refined["liver"])  # ...so the later click's brush does, around it
    world = changed @ phantom.image.affine[:3, :3].T + phantom.image.affine[:3, 3]
    assert len(changed) and np.linalg.norm(world - np.array(click), axis=1).max() <= (BRUSH + 1) * 12.0 * np.sqrt(3)
    assert seg.meta.get("guided") == {}


def test_points_or_a_box_alone_and_their_errors(segmenter, phantom):
    centre = _world_of(phantom, "liver")
    seg = segmenter.segment(phantom.image, points=[(*centre, 1)], modality="ct")
    assert seg.prompts == ["region"] and seg.labels[1].kind == "region"
    box = (*(np.array(centre) - 40), *(np.array(centre) + 40))
    named = segmenter.segment(phantom.image, box={"tumour": box}, modality="ct")
    assert named.prompts == ["tumour"]
    inside = np.argwhere(named["tumour"])
    assert len(inside)  # this head fills the box
    world = inside @ phantom.image.affine[:3, :3].T + phantom.image.affine[:3, 3]
    margin = (3 + 1) * 12.0  # BOX_MARGIN model voxels and one for rounding
    assert (world >= np.array(box[:3]) - margin).all() and (world <= np.array(box[3:]) + margin).all()
    with pytest.raises(InputError, match="no positive point"):
        segmenter.segment(phantom.image, points=[(*centre, 0)], modality="ct")
    with pytest.raises(InputError, match="own prompt"):
        segmenter.segment(phantom.image, "kidneys", points=[(*centre, 1)], modality="ct")
    with pytest.raises(InputError, match="outside the image"):
        seg.refine("region", add=[(1e4, 0, 0)])
    with pytest.raises(InputError, match="at least one click"):
        seg.refine("region")


def test_models_without_a_head_or_zoom_weights_say_so(tiny_model, tmp_path, phantom):
    plain = api.load_model(tiny_model(tmp_path / "plain", CONCEPTS), device="cpu")
    with pytest.raises(InputError, match="no prompt head"):
        plain.segment(phantom.image, "liver", points=[(0, 0, 0, 1)], modality="ct")
    with pytest.raises(InputError, match="no zoom-in weights"):
        plain.segment(phantom.image, "liver", modality="ct", zoom=True)


def test_zoom_segments_each_found_region_again(segmenter, model_dir, phantom, tmp_path):
    import shutil

    shutil.copytree(model_dir, tmp_path / "m")
    zoom = tmp_path / "m" / "zoom"
    shutil.copytree(model_dir, zoom, ignore=shutil.ignore_patterns(HEAD_FOLDER))
    config = json.loads((zoom / "config.json").read_text())
    config["model"]["spacing"] = [8.0, 8.0, 8.0]  # the zoom-in grid is finer
    (zoom / "config.json").write_text(json.dumps(config))
    model = api.load_model(tmp_path / "m", device="cpu")
    coarse = model.segment(phantom.image, ["liver", "aorta"], modality="ct")
    fine = model.segment(phantom.image, ["liver", "aorta"], modality="ct", zoom=True)
    assert fine.meta["zoom"]["spacing"] == [8.0, 8.0, 8.0]
    for prompt, region in fine.meta["zoom"]["regions"].items():
        box = tuple(slice(a, b) for a, b in region)
        outside = np.ones(coarse.shape, bool)
        outside[box] = False
        assert np.array_equal(fine[prompt][outside], coarse[prompt][outside])  # only the region changes
    passes = fine.meta["zoom"]["passes"]
    assert sorted(p for group in passes for p in group) == sorted(fine.meta["zoom"]["regions"])
    with pytest.raises(InputError, match="cannot be refined"):
        fine.refine("liver", add=[(0, 0, 0)])
    with pytest.raises(InputError, match="text prompts only"):
        model.segment(phantom.image, "liver", modality="ct", zoom=True, probabilities=True)


def test_zoom_regions_merge_only_when_that_adds_no_work():
    from sat.interactive.zoom import merge_boxes

    def box(lo, hi):
        return tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))

    boxes = {"pancreas": box((10, 10, 10), (50, 30, 20)), "adrenal": box((30, 12, 12), (45, 28, 20)),
             "far": box((80, 80, 80), (90, 90, 90))}
    groups = merge_boxes(boxes)
    assert sorted(sorted(p) for _, p in groups) == [["adrenal", "pancreas"], ["far"]]
    merged = next(b for b, p in groups if "pancreas" in p)
    assert merged == boxes["pancreas"]  # the adrenal's box lies inside the pancreas's
