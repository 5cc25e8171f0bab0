"""sat.io: loading every supported source, geometry (RAS), modality and each error path."""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk  # noqa: N813

from sat import io
from sat.errors import InputError, SATError, UnsupportedFormatError

AFFINE = np.array([[-0.8, 0, 0, 10.0], [0, 0.9, 0, -20.0], [0, 0, 2.5, 30.0], [0, 0, 0, 1]])


def _ct(shape=(8, 9, 10)) -> np.ndarray:
    rng = np.random.default_rng(0)
    arr = rng.normal(40, 30, shape).astype(np.float32)
    arr[:, :2] = -1000  # air
    return arr


def _write_nifti(path: Path, arr: np.ndarray, affine=AFFINE) -> Path:
    nib.save(nib.Nifti1Image(arr, affine), str(path))
    return path


def _write_dicom_series(folder: Path, uid: str, *, modality="CT", n=4, desc="axial") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(n):
        sl = sitk.GetImageFromArray((np.arange(30, dtype=np.int16).reshape(1, 5, 6) * (k + 1)) - 1000)
        sl.SetSpacing((0.7, 0.6, 2.0))
        tags = {
            "0008|0060": modality, "0020|000e": uid, "0020|000d": "1.2.3", "0008|103e": desc,
            "0020|0032": f"-100\\-50\\{k * 2.0}", "0020|0037": "1\\0\\0\\0\\1\\0",
            "0020|0013": str(k + 1), "0008|0018": f"{uid}.{k + 1}", "0028|0030": "0.6\\0.7",  # row (y), column (x)
        }
        for key, value in tags.items():
            sl.SetMetaData(key, value)
        writer.SetFileName(str(folder / f"{uid}_{k}.dcm"))
        writer.Execute(sl)


def test_load_nifti_roundtrip_and_save(tmp_path):
    arr = _ct()
    vol = io.load(_write_nifti(tmp_path / "ct.nii.gz", arr.astype(np.int16)))
    assert vol.array.dtype == np.float32 and vol.shape == arr.shape
    assert np.allclose(vol.affine, AFFINE) and vol.spacing == pytest.approx((0.8, 0.9, 2.5))
    assert vol.modality == "ct" and vol.meta["modality_source"] == "intensity"
    out = io.save(vol, tmp_path / "out" / "copy.nii.gz")
    again = io.load(out)
    assert np.array_equal(again.array, vol.array) and np.allclose(again.affine, AFFINE, atol=1e-5)
    img = nib.load(str(out))
    assert int(img.header["sform_code"]) == 1 and int(img.header["qform_code"]) == 1
    assert sorted(p.name for p in out.parent.iterdir()) == ["copy.nii.gz"]  # no temp file left


def test_save_is_atomic_when_interrupted(tmp_path, monkeypatch):
    target = tmp_path / "seg.nii.gz"

    def broken_save(img, filename):
        Path(filename).write_bytes(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(nib, "save", broken_save)
    with pytest.raises(KeyboardInterrupt):
        io.save(np.zeros((3, 3, 3), np.uint8), target, affine=AFFINE)
    assert list(tmp_path.iterdir()) == []


def test_save_needs_affine_and_nifti_name(tmp_path):
    with pytest.raises(InputError, match="affine"):
        io.save(np.zeros((3, 3, 3)), tmp_path / "x.nii.gz")
    with pytest.raises(UnsupportedFormatError, match="NIfTI"):
        io.save(io.Volume(np.zeros((3, 3, 3), np.float32), AFFINE), tmp_path / "x.nrrd")
    out = io.save(np.ones((3, 3, 3), np.int64) * 300, tmp_path / "lab.nii", affine=AFFINE)
    assert nib.load(str(out)).get_data_dtype() == np.int16


def test_modality_precedence(tmp_path):
    mr_like = np.abs(_ct()) + 1
    assert io.load((mr_like, AFFINE)).modality == "mr"
    assert io.load((_ct(), AFFINE)).modality == "ct"
    assert io.load((_ct(), AFFINE), modality="PET").modality == "pet"
    _write_dicom_series(tmp_path / "dcm", "1.2.3.4", modality="MR")
    vol = io.load(tmp_path / "dcm")  # intensities look like CT, the tag says MR
    assert vol.modality == "mr" and vol.meta["modality_source"] == "dicom"
    assert io.load(tmp_path / "dcm", modality="ct").meta["modality_source"] == "argument"
    with pytest.raises(InputError, match="unknown modality"):
        io.load((_ct(), AFFINE), modality="xray")


def test_pet_is_read_from_the_dicom_tag_and_header_texts(tmp_path, caplog):
    _write_dicom_series(tmp_path / "pt", "1.2.3.9", modality="PT")
    assert io.load(tmp_path / "pt").modality == "pet"  # CT-like values, the tag wins
    pet = nib.Nifti1Image(_ct(), AFFINE)  # CT-like values again: only the description can say PET
    pet.header["descrip"] = b"FDG PET SUVbw"
    nib.save(pet, str(tmp_path / "pet.nii.gz"))
    with caplog.at_level("INFO", logger="sat.io"):
        vol = io.load(tmp_path / "pet.nii.gz")
    assert vol.modality == "pet" and vol.meta["modality_source"] == "header"
    assert "NIfTI description 'FDG PET SUVbw'" in caplog.text
    assert io.load(tmp_path / "pet.nii.gz", modality="ct").modality == "ct"  # the argument wins
    pet.header["descrip"] = b"PET/CT"  # names two: no claim
    nib.save(pet, str(tmp_path / "petct.nii.gz"))
    assert io.load(tmp_path / "petct.nii.gz").meta["modality_source"] == "intensity"
    img = sitk.GetImageFromArray(np.abs(_ct()).transpose(2, 1, 0))
    img.SetMetaData("NRRD_content", "PET")
    sitk.WriteImage(img, str(tmp_path / "pet.nrrd"))
    assert io.load(tmp_path / "pet.nrrd").modality == "pet"


def test_a_guessed_modality_is_logged_once_at_info_with_its_reason(tmp_path, caplog):
    path = _write_nifti(tmp_path / "ct.nii.gz", _ct())
    with caplog.at_level("INFO", logger="sat.io"):
        assert io.load(path).modality == "ct"
    (line,) = [r.getMessage() for r in caplog.records if r.levelname == "INFO"]
    assert "guessed as ct from intensities" in line and "below -100" in line
    assert "modality='mr' or 'pet'" in line and "--modality" in line
    caplog.clear()
    with caplog.at_level("INFO", logger="sat.io"):
        io.load(path, modality="pet")
        io.load(io.load(path, modality="mr"))  # a Volume keeps its modality: nothing guessed
    assert not [r for r in caplog.records if r.levelname == "INFO"]


def test_dicom_series_lps_to_ras(tmp_path):
    _write_dicom_series(tmp_path / "dcm", "1.2.3.4", n=4)
    vol = io.load(tmp_path / "dcm")
    assert vol.shape == (6, 5, 4)
    assert vol.spacing == pytest.approx((0.7, 0.6, 2.0))
    # DICOM LPS origin (-100, -50, 0) -> RAS (100, 50, 0); +i goes to patient left = -x in RAS
    assert np.allclose(vol.affine[:3, 3], [100, 50, 0])
    assert np.allclose(np.diag(vol.affine)[:3], [-0.7, -0.6, 2.0])
    assert vol.array[1, 0, 0] == 1 - 1000 and vol.array[0, 1, 0] == 6 - 1000  # [X, Y, Z] order
    assert vol.array[0, 0, 3] == vol.array[0, 0, 0]  # slices ordered by position


def test_dicom_folder_with_several_series_lists_them(tmp_path):
    _write_dicom_series(tmp_path, "1.2.3.4", desc="axial")
    _write_dicom_series(tmp_path, "1.2.3.5", desc="coronal")
    with pytest.raises(InputError, match=r"2 DICOM series.*1\.2\.3\.4.*1\.2\.3\.5") as err:
        io.load(tmp_path)
    assert "\n" not in str(err.value)


def test_folder_without_dicom(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InputError, match="no DICOM series"):
        io.load(tmp_path)


def test_nrrd_lps_to_ras(tmp_path):
    img = sitk.GetImageFromArray(np.arange(24, dtype=np.int16).reshape(2, 3, 4))
    img.SetSpacing((0.5, 0.6, 3.0))
    img.SetOrigin((10.0, 20.0, 30.0))
    sitk.WriteImage(img, str(tmp_path / "x.nrrd"))
    vol = io.load_label(tmp_path / "x.nrrd")
    assert vol.shape == (4, 3, 2) and vol.array[1, 0, 0] == 1
    assert np.allclose(vol.affine, [[-0.5, 0, 0, -10], [0, -0.6, 0, -20], [0, 0, 3, 30], [0, 0, 0, 1]])


def test_mgz_and_nibabel_image_and_volume_sources(tmp_path):
    arr = np.abs(_ct())
    mgz = nib.MGHImage(arr, AFFINE)
    nib.save(mgz, str(tmp_path / "x.mgz"))
    vol = io.load(tmp_path / "x.mgz", modality="mr")
    assert np.allclose(vol.affine, AFFINE, atol=1e-4) and vol.meta["format"] == "mgz"
    from_img = io.load(nib.Nifti1Image(arr, AFFINE))
    assert np.allclose(from_img.array, arr)
    assert io.load(from_img).modality == from_img.modality
    with pytest.raises(InputError, match="cannot load"):
        io.load(42)


def test_trailing_singleton_is_squeezed_and_true_4d_rejected(tmp_path):
    vol = io.load(_write_nifti(tmp_path / "a.nii", _ct()[..., None]))
    assert vol.shape == (8, 9, 10) and vol.array.ndim == 3
    with pytest.raises(InputError, match=r"4D image .* holds 2 volumes"):
        io.load(_write_nifti(tmp_path / "b.nii.gz", np.zeros((4, 4, 4, 2), np.float32)))


@pytest.mark.parametrize(
    ("array", "affine", "match"),
    [
        (np.zeros((5, 6)), np.eye(4), "2D image"),
        (np.zeros((5, 6, 1)), np.eye(4), "2D image"),
        (np.zeros((0, 4, 4)), np.eye(4), "empty"),
        (np.zeros((4, 4, 4)), np.diag([1.0, 0.0, 1.0, 1.0]), "singular"),
        (np.zeros((4, 4, 4)), np.eye(3), "4x4"),
    ],
)
def test_bad_arrays(array, affine, match):
    with pytest.raises(InputError, match=match):
        io.load((array, affine))


def test_nan_and_inf_are_counted():
    arr = np.zeros((4, 4, 4), np.float32)
    arr[0, 0, :3] = np.nan
    arr[1, 1, 1] = np.inf
    with pytest.raises(InputError, match="4 of 64 voxels are NaN or infinite") as err:
        io.load((arr, np.eye(4)))
    assert isinstance(err.value, SATError)


def test_missing_file_and_unsupported_extension(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        io.load(tmp_path / "nope.nii.gz")
    (tmp_path / "scan.png").write_bytes(b"x")
    with pytest.raises(UnsupportedFormatError, match="unsupported file type '.png'"):
        io.load(tmp_path / "scan.png")


def test_truncated_and_corrupt_gzip(tmp_path):
    good = _write_nifti(tmp_path / "good.nii.gz", _ct((20, 20, 20)))
    data = good.read_bytes()
    (tmp_path / "cut.nii.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="truncated or corrupt"):
        io.load(tmp_path / "cut.nii.gz")
    (tmp_path / "bad.nii.gz").write_bytes(b"this is not gzip at all" * 20)
    with pytest.raises(InputError, match="truncated or corrupt"):
        io.load(tmp_path / "bad.nii.gz")
    raw = gzip.decompress(data)
    (tmp_path / "short.nii").write_bytes(raw[: len(raw) - 1000])
    with pytest.raises(InputError, match="truncated or corrupt"):
        io.load(tmp_path / "short.nii")


def test_load_label_keeps_integers(tmp_path):
    lab = np.zeros((4, 4, 4), np.uint8)
    lab[1:3, 1:3, 1:3] = 7
    vol = io.load_label(_write_nifti(tmp_path / "l.nii.gz", lab))
    assert vol.array.dtype == np.uint8 and vol.modality is None and vol.array.max() == 7
    as_float = io.load_label((lab.astype(np.float64), np.eye(4)))
    assert np.issubdtype(as_float.array.dtype, np.integer) and np.array_equal(as_float.array, lab)
    with pytest.raises(InputError, match="non-integer"):
        io.load_label((lab + 0.5, np.eye(4)))
    assert io.load_label((lab > 0, np.eye(4))).array.dtype == np.uint8


SHEARED = np.array([[-0.8, 0, 0, 10.0], [0, 0.8, 0.73, -20.0], [0, 0, 2.0, 30.0], [0, 0, 0, 1]])  # 20 deg tilt
OBLIQUE = np.array([[0.0, -0.9, 0, 5.0], [0.42, 0, 1.6, 1.0], [-0.56, 0, 1.2, 2.0], [0, 0, 0, 1]])  # rotated 53 deg


def _sitk_ras_affine(path: Path) -> np.ndarray:
    from sat.io._readers import sitk_to_numpy

    return sitk_to_numpy(sitk.ReadImage(str(path)))[1]


def test_saved_headers_agree_or_leave_the_qform_unset(tmp_path, caplog):
    assert io.is_sheared(SHEARED) and not io.is_sheared(OBLIQUE) and not io.is_sheared(AFFINE)
    oblique = io.save(_ct(), tmp_path / "oblique.nii.gz", affine=OBLIQUE)
    header = nib.load(str(oblique)).header
    assert int(header["qform_code"]) == 1 and int(header["sform_code"]) == 1
    np.testing.assert_allclose(header.get_qform(), header.get_sform(), atol=1e-4)
    np.testing.assert_allclose(_sitk_ras_affine(oblique), OBLIQUE, atol=1e-4)  # ITK reads the same geometry
    with caplog.at_level("WARNING", logger="sat.io"):
        sheared = io.save(_ct(), tmp_path / "sheared.nii.gz", affine=SHEARED)
    img = nib.load(str(sheared))
    assert int(img.header["qform_code"]) == 0 and int(img.header["sform_code"]) == 1  # no second geometry
    np.testing.assert_allclose(img.affine, SHEARED, atol=1e-5)
    assert "sheared" in caplog.text and "qform_code 0" in caplog.text
    with pytest.raises(RuntimeError, match="orthonormal"):  # ITK refuses it rather than misplacing it
        sitk.ReadImage(str(sheared))


def test_headers_without_orientation_or_with_two_geometries_warn(tmp_path, caplog):
    nib.save(nib.Nifti1Image(_ct(), None), str(tmp_path / "bare.nii.gz"))
    two = nib.Nifti1Image(_ct(), SHEARED)
    two.header.set_qform(SHEARED, code=1)  # what most writers do: a shear-stripped qform beside the sform
    nib.save(two, str(tmp_path / "two.nii.gz"))
    with caplog.at_level("WARNING", logger="sat.io"):
        io.load(tmp_path / "bare.nii.gz")
        io.load(tmp_path / "two.nii.gz")
        io.load(io.save(_ct(), tmp_path / "ours.nii.gz", affine=OBLIQUE))
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert "bare.nii.gz: the header holds no orientation" in lines[0]
    assert "two.nii.gz: the qform and sform" in lines[1] and "mm apart" in lines[1]


def test_ct_stored_in_a_soft_tissue_window_is_recognised_as_ct():
    """BTCV-style CT (clipped to [-125, 275] HU: air reads -125) is CT, not MR; MR is never negative."""
    rng = np.random.default_rng(0)
    windowed = np.clip(rng.normal(-200.0, 300.0, (40, 40, 20)), -125, 275).astype(np.float32)
    assert io.guess_modality(windowed)[0] == "ct"
    mr = rng.gamma(2.0, 150.0, (40, 40, 20)).astype(np.float32)
    assert io.guess_modality(mr)[0] == "mr"


def test_keep_dtype_uses_the_stored_integers_without_a_copy(tmp_path):
    ct = np.random.default_rng(0).integers(-1024, 3000, (6, 5, 4)).astype(np.int16)
    assert io.load((ct, np.eye(4))).array.dtype == np.float32  # the default: float32
    kept = io.load((ct, np.eye(4)), keep_dtype=True)
    assert kept.array.dtype == np.int16 and np.shares_memory(kept.array, ct) and kept.modality == "ct"
    from_file = io.load(_write_nifti(tmp_path / "ct.nii", ct), keep_dtype=True)
    assert from_file.array.dtype == np.int16 and np.array_equal(from_file.array, ct)
    img = nib.Nifti1Image(ct, np.eye(4))
    img.header.set_slope_inter(1.0, -1024.0)  # a scaled file: float32, with the scaling applied
    nib.save(img, tmp_path / "scaled.nii")
    scaled = io.load(tmp_path / "scaled.nii", keep_dtype=True)
    assert scaled.array.dtype == np.float32 and np.array_equal(scaled.array, ct - 1024.0)
    big_endian = io.load((ct.astype(">i2"), np.eye(4)), keep_dtype=True).array
    assert big_endian.dtype == np.int16 and big_endian.dtype.isnative and np.array_equal(big_endian, ct)
    with pytest.raises(InputError, match="NaN"):
        io.load((np.full((3, 3, 3), np.nan), np.eye(4)), keep_dtype=True)
