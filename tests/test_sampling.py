"""sat.data.sampling: case weights, query choice, patches, thin slabs, determinism, samplers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sat.data.sampling import (
    Case,
    EpochSampler,
    PatchDataset,
    QueryTable,
    case_weights,
    choose_queries,
)
from sat.errors import ConfigError, InputError

CONCEPTS = ("liver", "spleen", "aorta", "brain")


def make_case(dataset="d", name="c", shape=(48, 40, 24)) -> Case:
    label = np.zeros(shape, np.uint16)
    label[4:16, 10:24, 6:16] = 1  # liver: low x
    label[34:44, 10:20, 8:14] = 2  # spleen: high x
    image = np.full(shape, -1.0, np.float32)
    image[label == 1] = 1.0
    image[label == 2] = 2.0
    return Case(dataset, name, "ct", image.astype(np.float16), label, {"liver": (1,), "spleen": (2,)},
                ("liver", "spleen", "aorta"))


def make_table(dim=6) -> QueryTable:
    gen = torch.Generator().manual_seed(0)
    return QueryTable({("ct", c): torch.randn(3, dim, generator=gen) for c in CONCEPTS})


def test_case_weights_follow_inverse_sqrt_and_knobs():
    cases = [make_case("big", str(i), (4, 4, 4)) for i in range(9)] + [make_case("small", "0", (4, 4, 4))]
    w = case_weights(cases)
    assert w[0] == pytest.approx(w[8]) and w[9] / w[0] == pytest.approx(3.0)
    assert w.sum() == pytest.approx(1.0)
    w2 = case_weights(cases, {"small": 2.0, "big": 0.5})
    assert w2[9] / w2[0] == pytest.approx(3.0 * 4.0)
    assert case_weights(cases, {"small": 0.0})[9] == 0.0


@pytest.mark.parametrize("knobs", [{"d": -1.0}, {"d": "x"}, {"d": 0.0}])
def test_case_weights_errors(knobs):
    with pytest.raises(ConfigError):
        case_weights([make_case(shape=(4, 4, 4))], knobs)
    with pytest.raises(ConfigError):
        case_weights([])


def test_choose_queries_positives_first_and_negative_share():
    rng = np.random.default_rng(1)
    pos, neg = ["a", "b", "c", "d", "e"], ["x", "y", "z"]
    q = choose_queries(pos, neg, k=6, rng=rng)
    assert len(q) == 6 and set(q[:3]) <= set(pos) and set(q[3:]) <= set(neg)
    q = choose_queries(pos, neg, k=4, rng=rng, negative_fraction=0.0)  # still one negative
    assert set(q[:3]) <= set(pos) and q[3] in neg
    assert set(choose_queries([], neg, k=2, rng=rng)) <= set(neg)
    assert choose_queries(["a"], ["x"], k=8, rng=rng) == ["a", "x"]  # fewer than k: no padding here
    assert choose_queries(pos, [], k=3, rng=rng, concept_weights={"e": 1e9})[0] == "e"
    with pytest.raises(ConfigError):
        choose_queries(pos, neg, k=0, rng=rng)


def test_sample_shapes_targets_and_partial_label_negatives():
    ds = PatchDataset([make_case()], make_table(), patch_size=(16, 16, 8), queries_per_sample=4,
                      augment=False, p_thin=0.0, p_foreground=1.0)
    for i in range(20):
        s = ds[i]
        assert s["image"].shape == (1, 16, 16, 8) and s["image"].dtype == torch.float32
        assert s["target"].shape == (4, 16, 16, 8) and s["queries"].shape == (4, 6)
        n = int(s["query_mask"].sum())
        assert n == 3  # liver, spleen, aorta: brain is not labelled by the dataset, never a negative
        real = s["query_mask"]
        assert torch.equal(s["presence"][real] > 0, s["target"][real].flatten(1).any(1))
        assert not s["target"][~real].any() and not s["queries"][~real].any()
        # the image is exactly the label-derived intensity: targets align with the image
        img = s["image"][0]
        for k in range(n):
            if s["presence"][k]:
                vals = img[s["target"][k].bool()]
                assert torch.allclose(vals, vals[0].expand_as(vals))
        # positives first
        pres = s["presence"][:n].tolist()
        assert pres == sorted(pres, reverse=True)


def test_samples_are_deterministic_per_index_and_vary_across_indices():
    ds = PatchDataset([make_case()], make_table(), patch_size=(16, 16, 8), queries_per_sample=3, augment=True)
    a, b, c = ds[7], ds[7], ds[8]
    for key in ("image", "queries", "target", "presence", "query_mask"):
        assert torch.equal(a[key], b[key])
    assert not torch.equal(a["image"], c["image"])


def test_augmentation_never_flips_left_right():
    """Liver (low x) and spleen (high x) keep their sides in every augmented whole-volume sample."""
    table = make_table()
    ds = PatchDataset([make_case()], table, patch_size=(48, 40, 24), queries_per_sample=3, augment=True,
                      p_thin=0.0, p_foreground=0.0)
    ds.augment.p_spatial = 1.0
    both = 0
    for i in range(6):
        s = ds[i]
        centre = {}
        for k in range(int(s["presence"].sum())):
            for concept in ("liver", "spleen"):
                if any(torch.equal(s["queries"][k], row) for row in table.embeddings[("ct", concept)]):
                    centre[concept] = s["target"][k].nonzero()[:, 0].float().mean().item()
        if set(centre) == {"liver", "spleen"}:
            both += 1
            assert centre["liver"] < centre["spleen"]
    assert both >= 3


def test_thin_samples_blank_outer_slices_with_background():
    case = make_case()
    ds = PatchDataset([case], make_table(), patch_size=(16, 16, 16), queries_per_sample=3, augment=False,
                      p_thin=1.0, min_thin=4)
    thin_seen = 0
    for i in range(10):
        s = ds[i]
        z_has = (s["image"][0] != case.background).flatten(0, 1).any(0)
        blank = ~z_has
        if blank.any():
            thin_seen += 1
            assert not s["target"][:, :, :, blank].any()
    assert thin_seen >= 5


def test_patch_outside_volume_is_padded_with_background():
    case = make_case(shape=(8, 8, 4))
    ds = PatchDataset([case], make_table(), patch_size=(32, 32, 16), augment=False, p_thin=0.0)
    s = ds[0]
    assert s["image"].shape == (1, 32, 32, 16)
    assert (s["image"] == case.background).float().mean() > 0.8


def test_dataset_and_case_errors():
    with pytest.raises(InputError):
        Case("d", "c", "ct", np.zeros((4, 4, 4)), np.zeros((4, 4, 3), np.uint16), {}, ())
    with pytest.raises(ConfigError):
        PatchDataset([make_case()], make_table(), patch_size=(16, 16))
    with pytest.raises(ConfigError):
        PatchDataset([make_case()], make_table(), patch_size=(16, 16, 8), p_thin=2.0)
    with pytest.raises(ConfigError, match="no text embedding"):
        PatchDataset([make_case()], QueryTable({("ct", "liver"): torch.zeros(1, 4)}), patch_size=(8, 8, 8))


def test_query_table_round_trip_and_errors():
    table = make_table()
    again = QueryTable.from_flat(table.to_flat())
    assert torch.equal(again.get("ct", "liver"), table.get("ct", "liver"))
    rng = np.random.default_rng(0)
    rows = {tuple(table.get("ct", "liver", rng).tolist()) for _ in range(30)}
    assert len(rows) == 3  # synonym sampling uses every row
    with pytest.raises(ConfigError):
        table.get("mr", "liver")
    with pytest.raises(ConfigError):
        QueryTable({})
    with pytest.raises(ConfigError):
        QueryTable({("ct", "a"): torch.zeros(1, 4), ("ct", "b"): torch.zeros(1, 5)})


def test_epoch_sampler_distinct_across_ranks_epochs_and_positions():
    seen = set()
    for epoch in range(3):
        for rank in range(2):
            s = EpochSampler(6, batch_size=2, num_replicas=2, rank=rank)
            s.set_epoch(epoch)
            idx = list(s)
            assert len(idx) == len(s) == 6
            assert not seen & set(idx)
            seen |= set(idx)
    assert seen == set(range(36))
    pos = EpochSampler(4, batch_size=2, position=lambda: 6)
    assert list(pos) == [12, 13, 14, 15]  # what epoch 3 would be: resume-proof
    assert isinstance(EpochSampler(1), torch.utils.data.DistributedSampler)
    with pytest.raises(ConfigError):
        EpochSampler(0)
    with pytest.raises(ConfigError):
        EpochSampler(3, batch_size=2)
    with pytest.raises(ConfigError):
        EpochSampler(3, num_replicas=2, rank=2)


def test_foreground_sampling_centres_patches_on_structures():
    case = make_case(shape=(96, 96, 48))
    ds = PatchDataset([case], make_table(), patch_size=(16, 16, 8), queries_per_sample=3, augment=False,
                      p_thin=0.0, p_foreground=1.0)
    hits = sum(bool(ds[i]["presence"].any()) for i in range(20))
    ds0 = PatchDataset([case], make_table(), patch_size=(16, 16, 8), queries_per_sample=3, augment=False,
                       p_thin=0.0, p_foreground=0.0)
    hits0 = sum(bool(ds0[i]["presence"].any()) for i in range(20))
    assert hits == 20 and hits0 < 20
    assert math.isfinite(case.background)


def test_structure_shift_offsets_whole_structures_only():
    """Each structure gets one offset (or none) within +-shift; background never changes."""
    from sat.data.augment import Augmentation

    aug = Augmentation((8, 8, 8), p_structure=1.0, structure_shift=0.5)
    image = np.linspace(-1, 1, 8 * 8 * 8, dtype=np.float32).reshape(8, 8, 8)
    label = np.zeros((8, 8, 8), np.uint8)
    label[:4, :4] = 1
    label[4:, 4:] = 3
    changed = 0
    for seed in range(20):
        out = aug.structures(image, label, seed)
        delta = out - image
        assert np.all(delta[label == 0] == 0)
        for value in (1, 3):
            d = delta[label == value]
            assert np.allclose(d, d[0], atol=1e-6) and abs(d[0]) <= 0.5
            changed += bool(d[0])
    assert 10 <= changed <= 30  # about half of the 40 structure draws
    assert Augmentation((8, 8, 8)).structures(image, label, 0) is image  # off by default


def test_elastic_deformation_is_smooth_seeded_and_off_by_default():
    from sat.data.augment import Augmentation

    rng = np.random.default_rng(0)
    image = rng.random((40, 40, 24)).astype(np.float32)
    label = np.zeros((40, 40, 24), np.uint8)
    label[10:30, 12:28, 6:18] = 2
    plain, elastic = Augmentation((32, 32, 16)), Augmentation((32, 32, 16), p_elastic=1.0)
    assert plain.displacement(np.random.default_rng(0), image.shape) is None
    field = elastic.displacement(np.random.default_rng(0), image.shape)
    assert tuple(field.shape) == (1, 32, 32, 16, 3)
    voxels = field[0, ..., 2].numpy() * 40 / 2  # x displacement in input voxels
    assert 0.5 < voxels.std() < 4.0 and np.abs(np.diff(voxels, axis=0)).max() < 1.0  # a few voxels, smooth
    a_img, a_lab = elastic.spatial(image, label, 7)
    b_img, b_lab = elastic.spatial(image, label, 7)
    np.testing.assert_array_equal(a_img, b_img)
    np.testing.assert_array_equal(a_lab, b_lab)
    p_img, p_lab = plain.spatial(image, label, 7)
    assert set(np.unique(a_lab)) <= {0, 2} and not np.array_equal(a_lab, p_lab)
    assert abs(int((a_lab > 0).sum()) - int((p_lab > 0).sum())) < 0.3 * int((p_lab > 0).sum())


def test_zoom_range_sets_the_apparent_size_and_the_crop_margin():
    """A magnification of 2 shows a structure about 8x as many voxels as 1; bad ranges fail clearly."""
    from sat.data.augment import Augmentation

    label = np.zeros((64, 64, 32), np.uint8)
    label[28:36, 28:36, 12:20] = 1  # an 8^3 cube at the centre
    image = label.astype(np.float32)

    def voxels(zoom, seed=3):
        aug = Augmentation((32, 32, 16), p_spatial=1.0, rotate=(0.0, 0.0, 0.0), zoom=zoom)
        return int(aug.spatial(image, label, seed)[1].sum())

    assert voxels((1.0, 1.0)) == pytest.approx(512, rel=0.25)
    assert voxels((2.0, 2.0)) == pytest.approx(8 * 512, rel=0.25)
    sizes = [voxels((0.7, 1.4), seed) for seed in range(8)]
    assert all(0.25 * 512 < s < 4 * 512 for s in sizes) and max(sizes) > 1.5 * min(sizes)
    assert Augmentation((8, 8, 8), zoom=(0.7, 1.4)).margin == pytest.approx(1.1 / 0.7)
    assert Augmentation((8, 8, 8)).margin == 1.3
    with pytest.raises(ConfigError, match="zoom"):
        Augmentation((8, 8, 8), zoom=(1.2, 0.8))


def test_wide_zoom_crops_a_box_large_enough_for_the_smallest_magnification():
    ds = PatchDataset([make_case()], make_table(), patch_size=(16, 16, 8), queries_per_sample=3, zoom=(0.7, 1.4))
    image, label = ds._crop(ds.cases[0], np.random.default_rng(0))
    assert image.shape == label.shape == (26, 26, 13)  # ceil(patch * 1.1 / 0.7)


def test_foreground_voxel_lands_anywhere_in_the_patch_not_only_at_its_centre():
    """A one-voxel structure: centred with offset 0; spread over the patch (always inside) with 0.5."""
    label = np.zeros((64, 64, 32), np.uint16)
    label[30, 33, 15] = 1
    case = Case("d", "c", "ct", np.zeros(label.shape, np.float32), label, {"liver": (1,)}, ("liver", "spleen"))

    def positions(offset):
        ds = PatchDataset([case], make_table(), patch_size=(16, 16, 8), queries_per_sample=2, augment=False,
                          p_thin=0.0, p_foreground=1.0, foreground_offset=offset)
        return [tuple(int(i) for i in np.argwhere(ds._crop(case, np.random.default_rng(k))[1])[0]) for k in range(40)]

    assert set(positions(0.0)) == {(8, 8, 4)}
    spread = np.array(positions(0.5))
    assert spread.min(0).tolist() <= [2, 2, 1] and spread.max(0).tolist() >= [13, 13, 6]
    assert (spread >= 0).all() and (spread < [16, 16, 8]).all()
    with pytest.raises(ConfigError, match="foreground_offset"):
        PatchDataset([case], make_table(), patch_size=(16, 16, 8), foreground_offset=0.8)


def test_window_clips_cases_and_survives_simulated_enhancement():
    """A CT case clipped to the abdominal window stays in it after contrast/lumen simulation."""
    from sat.preprocess import ABDOMEN_WINDOW, CT_SCALE

    case = make_case()
    case.image = (np.linspace(-1000, 1500, case.image.size).reshape(case.image.shape) - CT_SCALE[0]) / CT_SCALE[1]
    case.intensity_mean, case.intensity_std = CT_SCALE
    case.tissues = {1: "liver", 2: "spleen"}
    case.clip_to(*ABDOMEN_WINDOW)
    low, high = ((v - CT_SCALE[0]) / CT_SCALE[1] for v in ABDOMEN_WINDOW)
    assert case.image.min() == pytest.approx(low) and case.image.max() == pytest.approx(high)
    assert case.background == pytest.approx(low)
    ds = PatchDataset([case], make_table(), patch_size=(32, 32, 16), p_contrast=1.0, p_lumen=1.0, p_thin=0.0,
                      p_foreground=1.0)
    ds.augment.intensity = lambda image, seed: image  # the MONAI intensity jitter may leave the window by design
    for i in range(6):
        image = ds[i]["image"].numpy()
        assert image.min() >= low - 1e-5 and image.max() <= high + 1e-5


def test_window_needs_the_intensity_mapping():
    case = make_case()
    with pytest.raises(InputError, match="intensity mapping"):
        case.clip_to(-125.0, 275.0)


def test_random_windows_move_each_bound_within_the_jitter():
    """Random windowing: a full-range CT case gets a different window per patch, each bound within
    ``window_jitter`` HU of ``ct_window``; thin padding takes the drawn lower bound."""
    from sat.preprocess import ABDOMEN_WINDOW, CT_SCALE

    case = make_case()
    hu = np.random.default_rng(0).uniform(-1000, 1500, case.image.shape)  # every patch spans the full range
    case.image = ((hu - CT_SCALE[0]) / CT_SCALE[1]).astype(np.float32)
    case.background = float(case.image.min())
    case.intensity_mean, case.intensity_std = CT_SCALE
    ds = PatchDataset([case], make_table(), patch_size=(32, 32, 16), p_thin=0.0, augment=False,
                      ct_window=ABDOMEN_WINDOW, window_jitter=100.0)
    hu = [ds[i]["image"].numpy() * CT_SCALE[1] + CT_SCALE[0] for i in range(12)]
    lows, highs = np.array([h.min() for h in hu]), np.array([h.max() for h in hu])
    assert ((lows >= -225 - 1e-3) & (lows <= -25 + 1e-3)).all() and ((highs >= 175 - 1e-3) & (highs <= 375 + 1e-3)).all()
    assert np.ptp(lows) > 20 and np.ptp(highs) > 20  # the window changes between patches
    thin = PatchDataset([case], make_table(), patch_size=(32, 32, 16), p_thin=1.0, min_thin=2, augment=False,
                        ct_window=ABDOMEN_WINDOW, window_jitter=100.0)
    images = [thin[i]["image"].numpy()[0] for i in range(8)]
    padded = [(im[..., 0].max(), im.min()) for im in images if np.ptp(im[..., 0]) == 0]
    assert padded and all(p == pytest.approx(m) and p > case.background for p, m in padded)  # the drawn floor
    with pytest.raises(ConfigError, match="window_jitter"):
        PatchDataset([case], make_table(), patch_size=(32, 32, 16), window_jitter=50.0)
    case.clip_to(*ABDOMEN_WINDOW)  # a case clipped at setup keeps its fixed window
    fixed = PatchDataset([case], make_table(), patch_size=(32, 32, 16), p_thin=0.0, augment=False,
                         ct_window=ABDOMEN_WINDOW, window_jitter=100.0)
    assert fixed[0]["image"].numpy().min() * CT_SCALE[1] + CT_SCALE[0] == pytest.approx(-125.0, abs=1e-3)
