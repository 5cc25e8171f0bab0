"""Every converter on a tiny synthetic fixture laid out like the real dataset."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from datafixtures import AFFINE, SHAPE, card, image, label, nifti, pair, write_json

from sat.data.cards import card_from_dict
from sat.data.converters import CONVERTERS, find_cases, load_case
from sat.errors import InputError

TWO = {1: {"name": "a", "concept": "liver"}, 2: {"name": "b", "concept": "spleen"}}


def _msd(root: Path):
    task = root / "Task09_Spleen"
    for case in ("spleen_2", "spleen_3"):
        pair(task / "imagesTr" / f"{case}.nii.gz", task / "labelsTr" / f"{case}.nii.gz")
    (task / "imagesTr" / "._spleen_2.nii.gz").write_bytes(b"\x00junk")  # macOS resource fork in the tarball
    nifti(task / "imagesTs" / "spleen_1.nii.gz", image())
    write_json(task / "dataset.json", {
        "name": "Spleen", "modality": {"0": "CT"}, "labels": {"0": "background", "1": "spleen"},
        "numTraining": 2, "training": [
            {"image": "./imagesTr/spleen_2.nii.gz", "label": "./labelsTr/spleen_2.nii.gz"},
            {"image": "./imagesTr/spleen_3.nii.gz", "label": "./labelsTr/spleen_3.nii.gz"},
            {"image": "./imagesTr/._spleen_2.nii.gz", "label": "./labelsTr/._spleen_2.nii.gz"}],
        "test": ["./imagesTs/spleen_1.nii.gz"]})
    return task, {}, {"spleen_2": "train", "spleen_3": "train"}


def _nnunet(root: Path):
    ds = root / "Dataset003_Liver"
    for case in ("liver_000", "liver_001"):
        pair(ds / "imagesTr" / f"{case}_0000.nii.gz", ds / "labelsTr" / f"{case}.nii.gz")
    nifti(ds / "imagesTs" / "liver_100_0000.nii.gz", image())
    write_json(ds / "dataset.json", {"channel_names": {"0": "CT"}, "labels": {"background": 0, "a": 1, "b": 2},
                                     "numTraining": 2, "file_ending": ".nii.gz"})
    return ds, {}, {"liver_000": "train", "liver_001": "train"}


def _totalseg(root: Path):
    ds = root / "Totalsegmentator_dataset_v201"
    for case in ("s0000", "s0001"):
        nifti(ds / case / "ct.nii.gz", image())
        nifti(ds / case / "segmentations" / "a.nii.gz", (label((1,)) > 0).astype(np.uint8))
        nifti(ds / case / "segmentations" / "b.nii.gz", (label((0, 1)) > 0).astype(np.uint8))
    (ds / "meta.csv").write_text("image_id;age;gender;institute;study_type;split\n"
                                 "s0000;60;m;A;ct abdomen;train\ns0001;70;f;B;ct thorax;test\n")
    return ds, {}, {"s0000": "train", "s0001": "test"}


def _amos(root: Path):
    ds = root / "amos22"
    pair(ds / "imagesTr" / "amos_0001.nii.gz", ds / "labelsTr" / "amos_0001.nii.gz")
    pair(ds / "imagesVa" / "amos_0008.nii.gz", ds / "labelsVa" / "amos_0008.nii.gz")
    pair(ds / "imagesTr" / "amos_0507.nii.gz", ds / "labelsTr" / "amos_0507.nii.gz")  # an MRI scan
    nifti(ds / "imagesTs" / "amos_0002.nii.gz", image())
    write_json(ds / "dataset.json", {"labels": {"0": "background", "1": "spleen"}})
    return ds, {}, {"amos_0001": "train", "amos_0008": "val"}


def _word(root: Path):
    ds = root / "WORD-V0.1.0"
    for split, (i, lab) in {"train": ("imagesTr", "labelsTr"), "val": ("imagesVal", "labelsVal"),
                            "test": ("imagesTs", "labelsTs")}.items():
        pair(ds / i / f"word_{split}.nii.gz", ds / lab / f"word_{split}.nii.gz")
    return ds, {}, {"word_train": "train", "word_val": "val", "word_test": "test"}


def _flare(root: Path):
    ds = root / "FLARE22Train"
    pair(ds / "images" / "FLARE22_Tr_0001_0000.nii.gz", ds / "labels" / "FLARE22_Tr_0001.nii.gz")
    return ds, {}, {"FLARE22_Tr_0001": "train"}


def _abdomenct1k(root: Path):
    ds = root / "AbdomenCT-1K"
    pair(ds / "AbdomenCT-1K-ImagePart1" / "Case_00001_0000.nii.gz", ds / "Mask" / "Case_00001.nii.gz")
    nifti(ds / "AbdomenCT-1K-ImagePart2" / "Case_00500_0000.nii.gz", image())  # no mask: skipped
    return ds, {}, {"Case_00001": "train"}


def _btcv(root: Path):
    ds = root / "Abdomen" / "RawData"
    pair(ds / "Training" / "img" / "img0001.nii.gz", ds / "Training" / "label" / "label0001.nii.gz")
    nifti(ds / "Testing" / "img" / "img0061.nii.gz", image())
    return root / "Abdomen", {}, {"img0001": "train"}


def _kits(root: Path):
    ds = root / "kits23" / "dataset"
    pair(ds / "case_00000" / "imaging.nii.gz", ds / "case_00000" / "segmentation.nii.gz")
    pair(ds / "case_00001" / "imaging.nii.gz", ds / "case_00001" / "segmentation.nii.gz")
    return ds, {}, {"case_00000": "train", "case_00001": "train"}


def _lits(root: Path):
    ds = root / "LiTS"
    pair(ds / "Training Batch 1" / "volume-0.nii", ds / "Training Batch 1" / "segmentation-0.nii")
    pair(ds / "Training Batch 2" / "volume-28.nii", ds / "Training Batch 2" / "segmentation-28.nii")
    return ds, {}, {"volume_000": "train", "volume_028": "train"}


def _ctorg(root: Path):
    ds = root / "OrganSegmentations"
    pair(ds / "volume-3.nii.gz", ds / "labels-3.nii.gz")
    return ds, {"options": {"label_prefix": "labels"}}, {"volume_003": "train"}


def _verse(root: Path):
    ds = root / "dataset-verse20training"
    pair(ds / "rawdata" / "sub-gl003" / "sub-gl003_dir-ax_ct.nii.gz",
         ds / "derivatives" / "sub-gl003" / "sub-gl003_dir-ax_seg-vert_msk.nii.gz")
    write_json(ds / "derivatives" / "sub-gl003" / "sub-gl003_dir-ax_seg-subreg_ctd.json", [{"label": 1}])
    return ds, {}, {"sub-gl003_dir-ax": "train"}


def _brats(root: Path):
    ds = root / "ASNR-MICCAI-BraTS2023-GLI-Challenge-TrainingData"
    case = "BraTS-GLI-00000-000"
    for seq in ("t1n", "t1c", "t2w", "t2f"):
        nifti(ds / case / f"{case}-{seq}.nii.gz", image().astype(np.float32) + 1000)
    nifti(ds / case / f"{case}-seg.nii.gz", label())
    old = ds / "BraTS2021_00000"
    for seq in ("flair", "t1"):
        nifti(old / f"BraTS2021_00000_{seq}.nii.gz", image().astype(np.float32) + 1000)
    nifti(old / "BraTS2021_00000_seg.nii.gz", label())
    return ds, {"options": {"sequences": ["t2f", "flair"]}, "modality": "mr"}, {
        "BraTS-GLI-00000-000_t2f": "train", "BraTS2021_00000_flair": "train"}


def _freesurfer(root: Path):
    subjects = root / "subjects"
    for subj in ("bert", "ernie"):
        nifti(subjects / subj / "mri" / "norm.mgz", image().astype(np.float32) + 1000)
        nifti(subjects / subj / "mri" / "aparc+aseg.mgz", label())
    return subjects, {"modality": "mr"}, {"bert": "train", "ernie": "train"}


def _generic(root: Path):
    ds = root / "mydata"
    pair(ds / "images" / "p01.nii.gz", ds / "labels" / "p01.nii.gz")
    pair(ds / "images" / "p02.nii.gz", ds / "labels" / "p02.nii.gz")
    return ds, {"splits": {"val": ["p02"]}}, {"p01": "train", "p02": "val"}


def _dicom_series(folder: Path, array_zyx: np.ndarray, spacing=(1.5, 1.5, 3.0)) -> None:
    """Write one DICOM file per slice (names sort in slice order) with position tags."""
    import SimpleITK as sitk  # noqa: N813

    folder.mkdir(parents=True, exist_ok=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k, plane in enumerate(array_zyx):
        img = sitk.GetImageFromArray(plane[None].astype(np.int16))
        img.SetSpacing(spacing)
        img.SetOrigin((0.0, 0.0, k * spacing[2]))
        for tag, value in {"0008|0060": "MR", "0020|000e": "1.2.826.0.1.3680043.2.1125.1",
                           "0020|000d": "1.2.826.0.1.3680043.2.1125.2", "0020|0013": str(k + 1),
                           "0020|0032": f"0\\0\\{k * spacing[2]}", "0020|0037": "1\\0\\0\\0\\1\\0",
                           "0018|0050": str(spacing[2]), "0028|0030": f"{spacing[1]}\\{spacing[0]}"}.items():
            img.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"IMG-0001-{k + 1:05d}.dcm"))
        writer.Execute(img)


def _chaos(root: Path):
    import SimpleITK as sitk  # noqa: N813

    ds = root / "Train_Sets"
    subject = ds / "MR" / "2" / "T2SPIR"
    rng = np.random.default_rng(0)
    vol = rng.integers(0, 500, size=(4, 10, 12)).astype(np.int16)  # z, rows, cols
    _dicom_series(subject / "DICOM_anon", vol)
    (subject / "Ground").mkdir(parents=True)
    for k in range(4):
        png = np.zeros((10, 12), np.uint8)
        png[2:4, 3:6] = 63    # liver
        png[6:8, 1:3] = 252   # spleen
        if k == 2:
            png[0, 0] = 126   # right kidney, one pixel
        sitk.WriteImage(sitk.GetImageFromArray(png), str(subject / "Ground" / f"IMG-0001-{k + 1:05d}.png"))
    labels = {1: {"name": "liver", "concept": "liver"}, 2: {"name": "right kidney", "concept": "kidney_right"},
              3: {"name": "left kidney", "concept": "kidney_left"}, 4: {"name": "spleen", "concept": "spleen"}}
    return ds, {"modality": "mr", "labels": labels, "options": {"sequences": ["T2SPIR"]}}, {"2_T2SPIR": "train"}


LAYOUTS = {"msd": _msd, "nnunet": _nnunet, "totalseg_v2": _totalseg, "amos22": _amos, "word": _word,
           "flare22": _flare, "abdomenct1k": _abdomenct1k, "btcv": _btcv, "kits": _kits, "lits": _lits,
           "ctorg": _ctorg, "verse": _verse,
           "brats": _brats, "freesurfer": _freesurfer, "generic": _generic, "chaos": _chaos}


def test_every_registered_layout_has_a_fixture():
    assert set(CONVERTERS) - {"files"} == set(LAYOUTS) - {"ctorg"}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_converter_finds_cases_and_reads_labels(layout, tmp_path):
    root, extra, expected = LAYOUTS[layout](tmp_path)
    labels = extra.pop("labels", TWO)
    if layout == "totalseg_v2":
        labels = {1: {"name": "a", "concept": "liver"}, 2: {"name": "b", "concept": "spleen"}}
    c = card_from_dict(card("x", "lits" if layout == "ctorg" else layout, labels, **extra))
    cases = find_cases(c, root)
    assert {s.case: c.split_of(s.case, s.split) for s in cases} == expected
    img, lab = load_case(cases[0], modality=c.modality, known=c.labels)
    assert lab.shape == img.shape and lab.dtype == np.int32
    present = set(np.unique(lab).tolist()) - {0}
    if layout == "chaos":
        assert present == {1, 2, 4}
        assert int((lab == 1).sum()) == 4 * 6 and int((lab == 2).sum()) == 1
    else:
        assert present == {1, 2}
        assert int((lab == 1).sum()) == int((label() == 1).sum())


def test_chaos_png_count_mismatch_is_an_input_error(tmp_path):
    root, extra, _ = _chaos(tmp_path)
    next((root / "MR" / "2" / "T2SPIR" / "Ground").glob("*.png")).unlink()
    c = card_from_dict(card("x", "chaos", extra.pop("labels"), **extra))
    with pytest.raises(InputError, match="PNG masks for 4 DICOM"):
        load_case(find_cases(c, root)[0], modality="mr")


def test_msd_channel_of_4d_image(tmp_path):
    task = tmp_path / "Task01_BrainTumour"
    four = np.stack([image(0), image(1) + 5000], axis=-1).astype(np.float32)
    nifti(task / "imagesTr" / "BRATS_001.nii.gz", four)
    nifti(task / "labelsTr" / "BRATS_001.nii.gz", label())
    write_json(task / "dataset.json", {"training": [{"image": "./imagesTr/BRATS_001.nii.gz",
                                                      "label": "./labelsTr/BRATS_001.nii.gz"}]})
    c = card_from_dict(card("x", "msd", TWO, modality="mr", options={"channel": 1}))
    img, _ = load_case(find_cases(c, task)[0], modality="mr")
    assert img.shape == SHAPE and img.array.min() >= 4000
    c = card_from_dict(card("x", "msd", TWO, modality="mr", options={"channel": 5}))
    with pytest.raises(InputError, match="channel 5"):
        load_case(find_cases(c, task)[0], modality="mr")


def test_amos_keeps_only_the_cards_modality(tmp_path):
    root, _, _ = _amos(tmp_path)
    mr = card_from_dict(card("x", "amos22", TWO, modality="mr"))
    assert [s.case for s in find_cases(mr, root)] == ["amos_0507"]


def test_files_layout_merges_remaps_and_resamples_a_flipped_label(tmp_path):
    nifti(tmp_path / "img.nii.gz", image())
    flip = AFFINE.copy()
    flip[1, 1], flip[1, 3] = -2.0, 2.0 * (SHAPE[1] - 1)  # same grid stored upside down along y
    nifti(tmp_path / "a.nii.gz", np.ascontiguousarray(label((1,))[:, ::-1]), flip)
    nifti(tmp_path / "b.nii.gz", (label((0, 1)) > 0).astype(np.uint8))
    c = card_from_dict(card("x", "files", TWO, cases=[
        {"id": "c1", "image": "img.nii.gz", "labels": ["a.nii.gz", {"file": "b.nii.gz", "values": {1: 2}}]}]))
    (source,) = find_cases(c, tmp_path)
    _, lab = load_case(source, modality="ct", known=c.labels)
    np.testing.assert_array_equal(lab, label((1, 2)))
    assert source.labelled_values(c.labels) == {1, 2}


def test_label_on_a_finer_grid_is_resampled_in_physical_space(tmp_path):
    nifti(tmp_path / "img.nii.gz", image())
    fine = label(shape=SHAPE).repeat(2, axis=0)
    aff = AFFINE.copy()
    aff[0, 0], aff[0, 3] = 1.0, -0.5
    nifti(tmp_path / "lab.nii.gz", fine, aff)
    c = card_from_dict(card("x", "files", TWO, cases=[{"id": "c", "image": "img.nii.gz", "label": "lab.nii.gz"}]))
    _, lab = load_case(find_cases(c, tmp_path)[0], modality="ct")
    np.testing.assert_array_equal(lab, label())


def test_unknown_label_values_become_background(tmp_path, caplog):
    pair(tmp_path / "i.nii.gz", tmp_path / "l.nii.gz", values=(1, 7))
    c = card_from_dict(card("x", "files", TWO, cases=[{"id": "c", "image": "i.nii.gz", "label": "l.nii.gz"}]))
    _, lab = load_case(find_cases(c, tmp_path)[0], modality="ct", known=c.labels)
    assert set(np.unique(lab).tolist()) == {0, 1}
    assert "not in the card" in caplog.text


@pytest.mark.parametrize("layout", ["msd", "nnunet", "amos22", "word", "flare22", "abdomenct1k", "btcv", "totalseg_v2",
                                    "kits", "lits", "verse", "brats", "chaos", "freesurfer", "generic"])
def test_wrong_root_gives_one_line_input_error(layout, tmp_path):
    (tmp_path / "empty").mkdir()
    c = card_from_dict(card("x", layout, TWO))
    with pytest.raises(InputError) as err:
        find_cases(c, tmp_path / "empty")
    assert "\n" not in str(err.value)


def test_missing_root_and_missing_case_file(tmp_path):
    c = card_from_dict(card("x", "files", TWO, cases=[{"id": "c", "image": "nope.nii.gz", "label": "l.nii.gz"}]))
    with pytest.raises(InputError, match="not found"):
        find_cases(c, tmp_path / "absent")
    with pytest.raises(InputError, match="nope.nii.gz not found"):
        find_cases(c, tmp_path)


def test_nifti_fixture_geometry_round_trips(tmp_path):
    path = nifti(tmp_path / "x.nii.gz", label())
    assert nib.load(path).shape == SHAPE


def test_remap_handles_floats_and_huge_values():
    from sat.data.converters.base import remap

    arr = np.array([[[0.0, 1.0], [2.0, 3.0]]])
    np.testing.assert_array_equal(remap(arr, {1: 5, 3: 7}), [[[0, 5], [0, 7]]])
    big = np.array([[[0, 2_000_000_000], [4, 1]]], dtype=np.int64)
    np.testing.assert_array_equal(remap(big, {2_000_000_000: 2, 1: 1}), [[[0, 2], [0, 1]]])
    assert remap(arr, None).dtype == np.int32
