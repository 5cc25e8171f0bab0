"""Segmentation: masks, labelmap, labels, volumes, atomic save, overlay PNG."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

import sat.io
from sat.errors import InputError
from sat.overlay import _to_ras, backdrop, label_centre
from sat.segmentation import Label, Segmentation

AFFINE = np.array([[-2.0, 0, 0, 50], [0, -2.0, 0, 40], [0, 0, 3.0, -10], [0, 0, 0, 1]])


@pytest.fixture
def seg() -> Segmentation:
    a = np.zeros((10, 8, 6), bool)
    b = np.zeros_like(a)
    a[2:5, 2:5, 1:3] = True  # 18 voxels
    b[4:7, 4:6, 2:4] = True  # 12 voxels, overlaps a in 1
    labels = [Label(1, "Left kidney", "kidney_left", "left kidney", "concept", ("kidney_left",)),
              Label(2, "blob", None, None, "text", ())]
    image = np.linspace(-1000, 1000, a.size, dtype=np.float32).reshape(a.shape)
    return Segmentation({"Left kidney": a, "blob": b}, AFFINE, labels=labels, image=image, modality="ct",
                        meta={"model": "test"})


def test_masks_labelmap_and_access(seg):
    assert seg.prompts == ["Left kidney", "blob"] and len(seg) == 2 and list(seg) == seg.prompts
    assert seg["Left kidney"].dtype == bool and seg["Left kidney"].shape == (10, 8, 6)
    assert seg["left kidney"].sum() == 18  # case-insensitive
    assert seg["kidney_left"].sum() == 18  # by concept id
    assert seg.masks["blob"].sum() == 12 and set(seg.masks) == {"Left kidney", "blob"}
    assert "blob" in seg and "liver" not in seg
    with pytest.raises(KeyError, match="prompts are"):
        seg["liver"]
    # default labelmap: first prompt wins where masks overlap
    assert (seg.labelmap == 1).sum() == 18 and (seg.labelmap == 2).sum() == 11
    assert seg.labelmap.dtype == np.uint8
    np.testing.assert_array_equal(seg.affine, AFFINE)
    assert seg.labels[1].concept == "kidney_left" and seg.labels[2].concept is None


def test_volumes_ml(seg):
    table = seg.volumes_ml()
    assert list(table.columns) == ["value", "prompt", "concept", "name", "voxels", "ml"]
    assert table["voxels"].tolist() == [18, 12]
    assert seg.voxel_ml == pytest.approx(0.012)
    assert table["ml"].tolist() == pytest.approx([18 * 0.012, 12 * 0.012])
    assert seg.voxels("blob") == 12


def test_save_writes_every_file_on_the_input_grid(seg, tmp_path):
    out = seg.save(tmp_path / "out")
    files = sorted(p.name for p in out.iterdir())
    assert files == ["Left_kidney.nii.gz", "blob.nii.gz", "labelmap.nii.gz", "labels.json"]
    lab = nib.load(out / "labelmap.nii.gz")
    assert lab.shape == (10, 8, 6)
    np.testing.assert_allclose(lab.affine, AFFINE, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(lab.dataobj), seg.labelmap)
    mask = nib.load(out / "blob.nii.gz")
    np.testing.assert_array_equal(np.asarray(mask.dataobj) > 0, seg["blob"])
    np.testing.assert_allclose(mask.affine, AFFINE, atol=1e-5)
    meta = json.loads((out / "labels.json").read_text())
    assert meta["model"] == "test" and meta["shape"] == [10, 8, 6]
    first = meta["labels"][0]
    assert {k: first[k] for k in ("value", "prompt", "concept", "name", "voxels", "file")} == {
        "value": 1, "prompt": "Left kidney", "concept": "kidney_left", "name": "left kidney",
        "voxels": 18, "file": "Left_kidney.nii.gz"}
    assert first["ml"] == pytest.approx(0.216)
    assert meta["labels"][1]["concept"] is None
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left behind


def test_save_into_existing_folder_and_file_names(tmp_path):
    m = np.zeros((4, 4, 4), bool)
    m[1, 1, 1] = True
    prompts = ["left kidney", "left/kidney", "labelmap", "***"]
    seg = Segmentation({p: m for p in prompts}, np.eye(4))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("x")
    seg.save(tmp_path / "out")
    names = json.loads((tmp_path / "out" / "labels.json").read_text())["labels"]
    files = [n["file"] for n in names]
    assert files == ["left_kidney.nii.gz", "left_kidney_2.nii.gz", "labelmap_3.nii.gz", "label_4.nii.gz"]
    assert all((tmp_path / "out" / f).is_file() for f in files)
    assert (tmp_path / "out" / "keep.txt").read_text() == "x"


def test_save_to_a_file_fails(seg, tmp_path):
    target = tmp_path / "taken"
    target.write_text("not a folder")
    with pytest.raises(InputError, match="is a file"):
        seg.save(target)
    assert target.read_text() == "not a folder"


def test_interrupted_save_leaves_no_partial_output(seg, tmp_path, monkeypatch):
    real_write = sat.io.write_nifti
    calls = []

    def failing_write(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # the label map is written, the first mask fails
            raise OSError("disk full")
        return real_write(*args, **kwargs)

    monkeypatch.setattr(sat.io, "write_nifti", failing_write)
    with pytest.raises(OSError, match="disk full"):
        seg.save(tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_overlay_png(seg, tmp_path):
    path = seg.overlay_png(tmp_path / "sub" / "overlay.png")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    assert not [p for p in path.parent.iterdir() if p.name != "overlay.png"]
    no_image = Segmentation({"a": seg["blob"]}, AFFINE)  # no background image: labels only
    assert no_image.overlay_png(tmp_path / "plain.png").is_file()
    with pytest.raises(InputError, match="PNG"):
        seg.overlay_png(tmp_path / "overlay.jpg")
    with pytest.raises(InputError, match="does not match"):
        seg.overlay_png(tmp_path / "x.png", image=np.zeros((3, 3, 3)))


@pytest.mark.parametrize("seed", range(5))
def test_label_centre_is_the_rounded_mean_index_of_the_labelled_voxels(seed):
    rng = np.random.default_rng(seed)
    labels = (rng.random((23, 17, 11)) < rng.uniform(0.001, 0.3)).astype(np.uint8) * rng.integers(1, 4)
    view = labels[::-1].transpose(1, 0, 2)  # a flipped, permuted view, as a display reorientation gives
    expected = np.argwhere(view > 0).mean(axis=0).round().astype(int) if view.any() else np.array(view.shape) // 2
    np.testing.assert_array_equal(label_centre(view), expected)
    np.testing.assert_array_equal(label_centre(np.zeros((4, 6, 8), np.uint8)), [2, 3, 4])


def test_overlay_from_the_kept_planes_is_the_overlay_from_the_image(seg, tmp_path):
    from matplotlib.image import imread

    planes = backdrop(seg.image, seg.labelmap, seg.affine, seg.modality)
    assert sum(p.nbytes for p in planes.planes) < seg.image.nbytes / 2
    light = Segmentation._from_crops(seg._crops, seg.shape, seg.affine, seg.labelmap, labels=list(seg.labels.values()),
                                     backdrop=planes, modality="ct")
    assert light.image is None
    np.testing.assert_array_equal(imread(light.overlay_png(tmp_path / "planes.png")),
                                  imread(seg.overlay_png(tmp_path / "image.png")))
    assert not np.array_equal(imread(light.overlay_png(tmp_path / "given.png", image=-seg.image)),
                              imread(tmp_path / "planes.png"))  # an image given explicitly wins


def test_overlay_planes_of_another_labelmap_are_not_drawn(seg, tmp_path, caplog):
    planes = backdrop(seg.image, seg.labelmap, seg.affine, seg.modality)
    moved = np.zeros_like(seg.labelmap)
    moved[8, 7, 5] = 1
    other = Segmentation._from_crops(seg._crops, seg.shape, seg.affine, moved, labels=list(seg.labels.values()),
                                     backdrop=planes, modality="ct")
    with caplog.at_level("WARNING", logger="sat.overlay"):
        assert other.overlay_png(tmp_path / "o.png").is_file()
    assert "without the image" in caplog.text


def test_display_reorientation_to_ras():
    arr = np.arange(24).reshape(2, 3, 4)
    flipped = np.diag([-1.0, 1, 1, 1])
    ras, zooms = _to_ras(arr, flipped)
    np.testing.assert_array_equal(ras, arr[::-1])
    permuted = np.array([[0, 2.0, 0, 0], [3.0, 0, 0, 0], [0, 0, 1.0, 0], [0, 0, 0, 1]])
    ras, zooms = _to_ras(arr, permuted)
    assert ras.shape == (3, 2, 4)
    np.testing.assert_allclose(zooms, [2.0, 3.0, 1.0])


def test_invalid_construction():
    with pytest.raises(InputError, match="at least one"):
        Segmentation({}, np.eye(4))
    with pytest.raises(InputError, match="one shape"):
        Segmentation({"a": np.zeros((2, 2, 2), bool), "b": np.zeros((3, 2, 2), bool)}, np.eye(4))
    with pytest.raises(InputError, match="labelmap"):
        Segmentation({"a": np.zeros((2, 2, 2), bool)}, np.eye(4), labelmap=np.zeros((2, 2, 2), float))
    with pytest.raises(InputError, match="4x4"):
        Segmentation({"a": np.zeros((2, 2, 2), bool)}, np.eye(3))


def test_saved_outputs_get_the_umask_permissions(seg, tmp_path):
    """Staging with mkdtemp/mkstemp (0700/0600) must not leak into the results."""
    import os
    import stat

    old = os.umask(0o022)
    try:
        out = seg.save(tmp_path / "perm")
        seg.overlay_png(tmp_path / "perm.png")
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o755
    for path in [*out.iterdir(), tmp_path / "perm.png"]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path.name


def test_save_with_a_sheared_affine_writes_one_geometry(tmp_path, caplog):
    sheared = AFFINE.copy()
    sheared[1, 2] = 1.1  # slices shifted in-plane: a gantry tilt kept as shear
    mask = np.zeros((10, 8, 6), bool)
    mask[2:5, 2:5, 1:3] = True
    with caplog.at_level("WARNING", logger="sat"):
        out = Segmentation({"liver": mask, "spleen": ~mask}, sheared).save(tmp_path / "out")
    assert sum("sheared" in r.getMessage() for r in caplog.records) == 1  # once, not once per file
    for name in ("labelmap.nii.gz", "liver.nii.gz", "spleen.nii.gz"):
        img = nib.load(str(out / name))
        assert int(img.header["qform_code"]) == 0 and int(img.header["sform_code"]) == 1
        np.testing.assert_allclose(img.affine, sheared, atol=1e-5)


def test_saving_over_an_earlier_result_replaces_it_without_stale_files(seg, tmp_path, monkeypatch):
    out = tmp_path / "out"
    seg.save(out, overlay=True)
    assert json.loads((out / "labels.json").read_text())["overlay"] == "overlay.png"
    (out / "notes.txt").write_text("mine")
    one = Segmentation({"blob": seg["blob"]}, AFFINE)
    real_save = sat.io.save
    monkeypatch.setattr(sat.io, "save", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        one.save(out)  # fails while staging: the earlier result is untouched
    assert {p.name for p in out.iterdir()} == {"Left_kidney.nii.gz", "blob.nii.gz", "labelmap.nii.gz", "labels.json",
                                               "overlay.png", "notes.txt"}
    monkeypatch.setattr(sat.io, "save", real_save)
    one.save(out)
    assert {p.name for p in out.iterdir()} == {"blob.nii.gz", "labelmap.nii.gz", "labels.json", "notes.txt"}
    assert [x["file"] for x in json.loads((out / "labels.json").read_text())["labels"]] == ["blob.nii.gz"]
