"""sat.preprocess on synthetic volumes: geometry, intensity, exact inverse, errors."""

from __future__ import annotations

import json
import tracemalloc

import nibabel as nib
import numpy as np
import pytest
import torch

from sat import io
from sat import preprocess as pp
from sat.errors import InputError
from sat.preprocess import grid as _grid

# oblique-free but permuted and flipped (P, S, R like the spinal-cord data) with anisotropic voxels
PSR = np.array([[0, 0, 1.2, -30.0], [-0.8, 0, 0, 40.0], [0, 2.0, 0, -10.0], [0, 0, 0, 1]])


def _mr(shape=(30, 24, 20), affine=PSR) -> io.Volume:
    rng = np.random.default_rng(1)
    arr = rng.uniform(100, 200, shape).astype(np.float32)
    arr[:3] = 0  # background
    return io.Volume(arr, affine, "mr")


def _world(affine, index) -> np.ndarray:
    return np.asarray(affine)[:3, :3] @ np.asarray(index, float) + np.asarray(affine)[:3, 3]


def test_standardize_geometry_and_record_json():
    vol = _mr()
    x, rec = pp.standardize(vol, spacing=(1.5, 2.0, 3.0))
    assert x.dtype == torch.float32 and tuple(x.shape) == (1, *rec.model_shape)
    assert nib.aff2axcodes(np.asarray(rec.model_affine)) == ("R", "A", "S")
    assert rec.spacing == pytest.approx((1.5, 2.0, 3.0), rel=0.1)
    # the field of view is kept: model grid corners span the same world box
    corner_in = _world(vol.affine, np.array(vol.shape) - 0.5)
    lo = _world(vol.affine, [-0.5, -0.5, -0.5])
    m_lo = _world(rec.model_affine, [-0.5, -0.5, -0.5])
    m_hi = _world(rec.model_affine, np.array(rec.model_shape) - 0.5)
    assert np.allclose(np.sort([lo, corner_in], axis=0), np.sort([m_lo, m_hi], axis=0), atol=1e-6)
    again = pp.Record.from_dict(json.loads(json.dumps(rec.to_dict())))
    assert again == rec
    _, rec2 = pp.standardize(vol, spacing=2.0, orientation="lps")
    assert nib.aff2axcodes(np.asarray(rec2.model_affine)) == ("L", "P", "S")


def test_bright_spot_stays_at_its_world_position():
    vol = _mr(shape=(40, 40, 40))
    vol.array[:] = 0
    vol.array[20:23, 10:13, 30:33] = 1000
    x, rec = pp.standardize(vol, spacing=2.0, normalize=False)
    weights = x[0].numpy()
    centre = [float((np.indices(rec.model_shape)[a] * weights).sum() / weights.sum()) for a in range(3)]
    dist = np.linalg.norm(_world(rec.model_affine, centre) - _world(vol.affine, [21, 11, 31]))
    assert dist <= 0.5  # intensity-weighted centre, in mm


def test_label_round_trip_exact_when_upsampling_and_close_when_downsampling():
    lab_arr = np.zeros((30, 24, 20), np.uint8)
    lab_arr[5:25, 4:20, 3:17] = 3
    lab_arr[10:15, 8:12, 6:10] = 9
    label = io.load_label((lab_arr, PSR))
    rec = pp.plan(label, spacing=0.5)
    back = pp.invert(pp.standardize_label(label, rec), rec)
    assert back.shape == lab_arr.shape and np.array_equal(back, lab_arr)
    rec = pp.plan(label, spacing=1.5)
    back = pp.invert(pp.standardize_label(label, rec), rec)
    assert np.mean(back == lab_arr) > 0.9
    assert np.array_equal(np.unique(back), [0, 3, 9])


def test_invert_linear_probabilities_with_channels():
    vol = _mr()
    x, rec = pp.standardize(vol, spacing=2.0)
    probs = torch.stack([torch.sigmoid(x[0]), torch.zeros(rec.model_shape)])
    out = pp.invert(probs, rec, mode="linear")
    assert out.shape == (2, *vol.shape) and out.dtype == np.float32
    assert out.min() >= 0 and out.max() <= 1 and np.all(out[1] == 0)
    ones = pp.invert(np.ones(rec.model_shape, np.float32), rec, mode="linear")
    assert np.allclose(ones, 1.0)


def test_crop_foreground_and_inverse_padding():
    arr = np.full((40, 40, 30), -1000.0, np.float32)
    arr[10:20, 15:30, 5:25] = 40.0
    ct = io.load((arr, np.diag([1.0, 1.0, 2.0, 1.0])))
    assert ct.modality == "ct"
    x, rec = pp.standardize(ct, spacing=2.0, crop_foreground=True, margin_mm=4.0)
    assert rec.crop_box == [[6, 24], [11, 34], [3, 27]]
    mask = pp.invert(np.ones(rec.model_shape, bool), rec)
    assert mask.shape == arr.shape and mask.dtype == bool
    assert mask[6:24, 11:34, 3:27].all() and mask.sum() == 18 * 23 * 24
    label = io.load_label(((arr > 0).astype(np.uint8), ct.affine))
    back = pp.invert(pp.standardize_label(label, rec), rec)
    assert np.array_equal(back, label.array)


def _ct_with_body():
    arr = np.full((20, 20, 20), -1000.0, np.float32)
    arr[5:15, 5:15, 5:15] = np.linspace(-400, 3000, 1000).reshape(10, 10, 10)
    return arr


def test_ct_normalisation_is_one_fixed_map_of_hounsfield_units():
    arr = _ct_with_body()
    x, rec = pp.standardize(io.load((arr, np.eye(4))), spacing=1.0)
    center, scale = pp.CT_SCALE
    assert rec.intensity == {"clip": [-500.0, 1000.0], "mean": center, "std": scale}
    np.testing.assert_allclose(x[0].numpy(), (np.clip(arr, -500, 1000) - center) / scale, atol=1e-5)
    # the same tissue gets the same value whatever else is in the field of view
    crop, _ = pp.standardize(io.load((arr[8:12], np.eye(4))), spacing=1.0)
    np.testing.assert_allclose(crop[0].numpy(), x[0, 8:12].numpy(), atol=1e-5)
    y, rec = pp.standardize(io.load((arr, np.eye(4))), spacing=1.0, ct_scale=(0.0, 100.0))
    assert float(y.max()) == pytest.approx(10.0) and rec.intensity["std"] == 100.0
    with pytest.raises(InputError, match="positive scale"):
        pp.standardize(io.load((arr, np.eye(4))), spacing=1.0, ct_scale=(0.0, 0.0))


def test_ct_per_scan_zscore_over_the_body_for_older_models():
    arr = _ct_with_body()
    x, rec = pp.standardize(io.load((arr, np.eye(4))), spacing=1.0, ct_scale=None)
    assert rec.intensity["clip"] == [-500.0, 1000.0]
    body = np.clip(arr[arr > -500], -500, 1000)
    assert rec.intensity["mean"] == pytest.approx(body.mean(), rel=1e-4)
    assert float(x.max()) == pytest.approx((1000 - body.mean()) / body.std(), rel=1e-3)
    assert float(x.min()) == pytest.approx((-500 - body.mean()) / body.std(), rel=1e-3)


def test_ct_scale_of_reads_the_model_description():
    assert pp.ct_scale_of({"ct": {"clip": [-500, 1000], "mean": -25, "std": 120}}) == (-25.0, 120.0)
    assert pp.ct_scale_of({"ct": "clip [-500, 1000] HU, z-score over body voxels"}) is None
    assert pp.ct_scale_of(None) == pp.CT_SCALE and pp.ct_scale_of({"mr": "z-score"}) == pp.CT_SCALE


def test_mr_normalisation_uses_nonzero_percentiles():
    vol = _mr()
    vol.array[3, 3, 3] = 1e6  # outlier
    x, rec = pp.standardize(vol, spacing=(1.2, 0.8, 2.0))  # same grid in RAS
    lo, hi = rec.intensity["clip"]
    assert 100 <= lo < 102 and 198 < hi <= 200
    inside = x[0][x[0] > x[0].min()]
    assert abs(float(inside.mean())) < 0.05 and abs(float(inside.std()) - 1) < 0.05
    _, raw = pp.standardize(vol, spacing=2.0, normalize=False)
    assert raw.intensity is None


def test_errors():
    vol = _mr()
    _, rec = pp.standardize(vol, spacing=2.0)
    with pytest.raises(InputError, match="does not match model space"):
        pp.invert(np.zeros((3, 3, 3)), rec)
    with pytest.raises(InputError, match="mode"):
        pp.invert(np.zeros(rec.model_shape), rec, mode="cubic")
    with pytest.raises(InputError, match="resample_to"):
        pp.standardize_label(io.load_label((np.zeros((5, 5, 5), np.uint8), np.eye(4))), rec)
    with pytest.raises(InputError, match="spacing"):
        pp.standardize(vol, spacing=(1.0, -1.0, 1.0))
    with pytest.raises(InputError, match="spacing"):
        pp.standardize(vol, spacing=(1.0, 1.0))
    with pytest.raises(InputError, match="crop_box"):
        pp.plan(vol, crop_box=[[0, 99], [0, 5], [0, 5]])
    with pytest.raises(InputError, match="mode"):
        pp.resample_to(vol, vol, mode="cubic")


def test_resample_to_flipped_grid_in_physical_space():
    lab = np.zeros((6, 5, 4), np.uint8)
    lab[0, 1, 2] = 4
    src = io.load_label((lab, np.diag([2.0, 1.0, 3.0, 1.0])))
    flip = np.diag([-2.0, 1.0, 3.0, 1.0])
    flip[0, 3] = 10.0  # index 5 of the reference lands on x = 0
    ref = io.Volume(np.zeros((6, 5, 4), np.float32), flip, "ct")
    out = pp.resample_to(src, ref)
    assert out.array.dtype == np.uint8 and np.array_equal(out.affine, flip)
    assert out.array[5, 1, 2] == 4 and out.array.sum() == 4
    lin = pp.resample_to(io.Volume(lab.astype(np.float32), src.affine), ref, mode="linear")
    assert lin.array[5, 1, 2] == pytest.approx(4.0)


@pytest.mark.slow
def test_large_ct_round_trip():
    """Geometry and overlap on a CT-sized grid (its speed and memory: benchmarks/peak_memory.py)."""
    arr = np.full((512, 512, 300), -1000, np.int16)
    arr[100:400, 120:380, 20:280] = 50
    ct = io.load((arr, np.diag([-0.8, -0.8, 1.5, 1.0])), modality="ct", keep_dtype=True)
    x, rec = pp.standardize(ct, spacing=3.0)
    back = pp.invert((x[0] > 0).numpy(), rec)
    assert rec.model_shape == (137, 137, 150) and back.shape == arr.shape
    truth = arr > 0
    assert 2 * np.sum(back & truth) / (back.sum() + truth.sum()) > 0.98


@pytest.mark.parametrize("seed", range(12))
def test_slab_resize_is_the_whole_volume_resize(seed):
    rng = np.random.default_rng(seed)
    shape, size = tuple(rng.integers(2, 30, 3)), tuple(rng.integers(1, 40, 3))
    array = rng.normal(0, 500, shape).astype(np.float32)
    expected = _grid.resize_linear(torch.from_numpy(array)[None], size)
    for slab_bytes in (1, 4 * shape[1] * shape[2] * 3, 1 << 30):  # one output row, a few rows, everything
        got = _grid.resize_linear_slabs(array, size, slab_bytes=slab_bytes)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=5e-3)


def test_standardize_reads_an_int16_ct_slab_by_slab(monkeypatch):
    rng = np.random.default_rng(3)
    arr = rng.integers(-1024, 2000, (200, 160, 128)).astype(np.int16)
    affine = np.diag([-0.9, 0.9, 1.3, 1.0])
    as_float, _ = pp.standardize(io.Volume(arr.astype(np.float32), affine, "ct"), spacing=2.5)
    monkeypatch.setattr(_grid, "SLAB_BYTES", 1 << 16)
    tracemalloc.start()
    try:
        x, rec = pp.standardize(io.Volume(arr, affine, "ct"), spacing=2.5, crop_foreground=True)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < arr.nbytes / 2, f"{peak} bytes traced for a {arr.nbytes}-byte input"  # no float32 copy
    assert rec.crop_box == [[0, n] for n in arr.shape]
    torch.testing.assert_close(x, as_float, rtol=1e-5, atol=1e-4)


def test_model_ct_window_is_read_from_its_intensity_description_and_applied():
    from sat.preprocess import ABDOMEN_WINDOW, CT_SCALE, CT_WINDOW, ct_window_of

    assert ct_window_of(None) == CT_WINDOW and ct_window_of({"ct": "z-score"}) == CT_WINDOW
    assert ct_window_of({"ct": {"clip": [-125, 275], "mean": -25, "std": 120}}) == ABDOMEN_WINDOW
    with pytest.raises(InputError, match="clip range"):
        ct_window_of({"ct": {"clip": [300, 200]}})
    hu = np.array([-1000.0, -125.0, 40.0, 275.0, 1200.0]).reshape(5, 1, 1).repeat(2, 1).repeat(2, 2)
    ct = io.load((hu, np.diag([3.0, 3.0, 3.0, 1.0])), modality="ct")
    x, _ = pp.standardize(ct, spacing=3.0, ct_window=ABDOMEN_WINDOW)
    back = x[0, :, 0, 0].numpy() * CT_SCALE[1] + CT_SCALE[0]
    assert back == pytest.approx([-125.0, -125.0, 40.0, 275.0, 275.0])  # full-range CT looks like windowed CT
