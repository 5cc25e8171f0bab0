"""DICOM series geometry: gantry tilt, uneven spacing, missing and duplicate slices, mixed stacks.

The synthetic series hold a ball of known volume and world position (partial-volume pixel
values 0..1000), so a wrong slice spacing or a sheared grid shows up as a wrong volume or a
misplaced centroid.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import SimpleITK as sitk  # noqa: N813
from dicomfixtures import AXIAL, sphere, tilted, write_series

from sat import io
from sat.errors import InputError
from sat.io._readers import sitk_to_numpy

LPS_TO_RAS = np.array([-1.0, -1.0, 1.0])
RADIUS = 15.0
BALL_ML = 4 / 3 * np.pi * RADIUS**3 / 1000


def _tilted_ball(folder, degrees=20.0, spacing=2.0, n=20, shape=(64, 64)):
    """A ball in a series tilted by ``degrees``: slices ``spacing`` apart along their normal,
    stacked along the table (z), as a tilted gantry acquires them. Returns (folder, centre LPS)."""
    iop = tilted(degrees)
    row, col = np.array(iop[:3]), np.array(iop[3:])
    table = np.array([0.0, 0.0, spacing / np.cos(np.radians(degrees))])
    first = np.array([-32.0, -30.0, -20.0])
    origins = [first + k * table for k in range(n)]
    centre = first + (n - 1) / 2 * table + (shape[0] - 1) / 2 * row + (shape[1] - 1) / 2 * col
    values = sphere(centre, RADIUS, (1.0, 1.0, spacing), iop)
    write_series(folder, origins, values, orientation=iop, shape=shape, tags={"0018|1120": f"{degrees:g}"})
    return folder, centre


def _ball_ml_and_centre(vol):
    weights = vol.array.astype(np.float64) / 1000
    voxel_ml = abs(np.linalg.det(vol.affine[:3, :3])) / 1000
    index = np.stack(np.nonzero(weights > 0), axis=1)
    centroid = np.average(index, axis=0, weights=weights[weights > 0])
    return weights.sum() * voxel_ml, (vol.array >= 500).sum() * voxel_ml, vol.affine[:3, :3] @ centroid + vol.affine[:3, 3]


def test_tilted_series_gives_the_right_volume_and_position(tmp_path, caplog):
    folder, centre = _tilted_ball(tmp_path / "tilt")
    with caplog.at_level(logging.WARNING, logger="sat.io"):
        vol = io.load(folder)
    ml, mask_ml, centroid = _ball_ml_and_centre(vol)
    assert ml == pytest.approx(BALL_ML, rel=0.005)  # 6.4 % too large when the shear is ignored
    assert mask_ml == pytest.approx(BALL_ML, rel=0.015)
    np.testing.assert_allclose(centroid, centre * LPS_TO_RAS, atol=0.25)  # 6.9 mm off when ignored
    assert vol.spacing == pytest.approx((1.0, 1.0, 2.0), abs=1e-4)
    assert not io.is_sheared(vol.affine)
    geometry = vol.meta["geometry"]
    assert geometry["resampled"] and geometry["tilt_degrees"] == pytest.approx(20.0, abs=0.01)
    assert geometry["gantry_tilt_tag"] == pytest.approx(20.0)
    assert vol.shape[2] == 20 and vol.shape[1] > 64  # every slice kept, grid widened to hold the drift
    [warning] = [r.getMessage() for r in caplog.records]
    assert "gantry tilt 20.0 degrees" in warning and "\n" not in warning


def test_tilted_label_series_stays_integer(tmp_path):
    folder, _ = _tilted_ball(tmp_path / "tilt", degrees=15.0, n=6, shape=(40, 40))
    lab = io.load_label(folder)
    assert np.issubdtype(lab.array.dtype, np.integer)
    assert set(np.unique(lab.array)) <= set(np.unique(sitk.GetArrayFromImage(_read_plain(folder))))


def _read_plain(folder):
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return reader.Execute()


def _ramp(world):
    return 10.0 * world[..., 2]  # 10 per mm along z: linear, so interpolation is exact


def test_missing_slice_is_detected_and_filled_in_place(tmp_path, caplog, capfd):
    origins = [(0.0, 0.0, 2.0 * k) for k in range(10) if k != 4]
    write_series(tmp_path / "gap", origins, _ramp, shape=(6, 5))
    with caplog.at_level(logging.WARNING, logger="sat.io"):
        vol = io.load(tmp_path / "gap", modality="ct")
    assert vol.shape == (6, 5, 10) and vol.spacing == pytest.approx((1.0, 1.0, 2.0))
    np.testing.assert_allclose(vol.array[0, 0], 20.0 * np.arange(10), atol=1e-3)  # today: spacing 2.25
    [warning] = [r.getMessage() for r in caplog.records]
    assert "between slices 4 and 5 of 9" in warning and "about 1 slice(s) missing" in warning
    assert vol.meta["geometry"]["notes"] and vol.meta["geometry"]["resampled"]
    assert "Non uniform sampling" not in capfd.readouterr().err  # SimpleITK's own warning is replaced
    assert sitk.ProcessObject.GetGlobalWarningDisplay()


def test_uneven_spacing_resamples_to_the_smallest(tmp_path):
    depths = [0.0, 2.5, 5.0, 7.5, 10.0, 15.0, 20.0, 25.0]  # 2.5 mm, then 5 mm
    write_series(tmp_path / "mixed", [(0.0, 0.0, z) for z in depths], _ramp, shape=(4, 4))
    vol = io.load(tmp_path / "mixed", modality="ct")
    assert vol.shape[2] == 11 and vol.spacing[2] == pytest.approx(2.5)
    np.testing.assert_allclose(vol.array[1, 2], 25.0 * np.arange(11), atol=1e-3)


def test_large_gap_is_refused_with_its_place(tmp_path):
    origins = [(0.0, 0.0, z) for z in (0.0, 2.0, 4.0, 6.0, 20.0, 22.0)]
    write_series(tmp_path / "stacks", origins, _ramp, shape=(4, 4))
    with pytest.raises(InputError, match=r"2\.00 to 14\.00 mm.*between slices 4 and 5 of 6.*own folder") as err:
        io.load(tmp_path / "stacks")
    assert "\n" not in str(err.value)


def test_duplicate_positions_are_refused(tmp_path):
    origins = [(0.0, 0.0, 2.0 * k) for k in range(5)] + [(0.0, 0.0, 4.0)]
    write_series(tmp_path / "dup", origins, _ramp, shape=(4, 4))
    with pytest.raises(InputError, match=r"more than one slice .*ImagePositionPatient \(0\.0, 0\.0, 4\.0\).*own folder"):
        io.load(tmp_path / "dup")


def test_mixed_orientations_are_refused(tmp_path):
    iops = [AXIAL] * 4 + [(1.0, 0.0, 0.0, 0.0, 0.0, -1.0)]  # a coronal localizer in the series
    origins = [(0.0, 0.0, 2.0 * k) for k in range(5)]
    write_series(tmp_path / "mixed", origins, _ramp, orientation=iops, shape=(4, 4))
    with pytest.raises(InputError, match="1 of 5 slices have another orientation"):
        io.load(tmp_path / "mixed")


def test_small_tilt_within_a_tenth_of_a_voxel_is_read_as_is(tmp_path):
    folder, centre = _tilted_ball(tmp_path / "tilt", degrees=0.1, n=8, shape=(40, 40))
    vol = io.load(folder)
    plain, _ = sitk_to_numpy(_read_plain(folder))
    assert np.array_equal(vol.array, plain) and not vol.meta["geometry"]["resampled"]
    assert vol.spacing[2] == pytest.approx(2.0, abs=1e-4)


@pytest.mark.realdata
@pytest.mark.parametrize("series", ["ct/totalseg_upper_abdomen_dicom/dicom", "ct/dcmqi_3slice/dicom"])
def test_real_series_are_read_exactly_as_before(shared_data, series):
    folder = shared_data / series
    plain, affine = sitk_to_numpy(_read_plain(folder))
    vol = io.load(folder)
    assert np.array_equal(vol.array, plain.astype(np.float32))
    np.testing.assert_allclose(vol.affine, affine, atol=1e-6)
    assert vol.meta["geometry"]["resampled"] is False and vol.meta["geometry"]["tilt_degrees"] == 0


def test_oblique_regular_series_is_read_as_simpleitk_reads_it(tmp_path):
    a, b = np.radians(30.0), np.radians(-20.0)
    row = np.array([np.cos(a), np.sin(a), 0.0])
    col = np.array([-np.sin(a) * np.cos(b), np.cos(a) * np.cos(b), np.sin(b)])
    normal = np.cross(row, col)
    origins = [np.array([10.0, -5.0, 3.0]) + 3.0 * k * normal for k in range(6)][::-1]  # files in reverse order
    write_series(tmp_path / "oblique", origins, _ramp, orientation=(*row, *col), pixel=(0.7, 0.9), shape=(9, 7))
    vol = io.load(tmp_path / "oblique", modality="mr")
    plain, affine = sitk_to_numpy(_read_plain(tmp_path / "oblique"))
    assert not vol.meta["geometry"]["resampled"] and vol.spacing == pytest.approx((0.7, 0.9, 3.0), abs=1e-5)
    np.testing.assert_array_equal(vol.array, plain)
    np.testing.assert_allclose(vol.affine, affine, atol=1e-4)
