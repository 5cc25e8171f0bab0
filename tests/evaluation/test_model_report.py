"""sat.evaluation.model_report (`sat evaluate model`): Dice per structure on the original grid of real cases."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sat.cli import main as sat_main
from sat.evaluation.model_report import evaluate_model, grid_ceiling
from sat.model import build_model
from sat.training.export import export_model

CARDS = Path(__file__).resolve().parents[2] / "datasets"
NET = {  # a minuscule untrained network over the packaged 384-d text encoder
    "preset": "test-micro", "widths": [4, 8, 8], "depths": [1, 1, 1], "decoder_depths": [1, 1],
    "text_dim": 384, "query_dim": 8, "decoder_layers": 1, "heads": 2, "ffn_dim": 16,
    "token_levels": 1, "mask_hidden": 8, "deep_supervision": 1, "spacing": [3.0, 3.0, 3.0],
    "patch_size": [16, 16, 8],
}


def test_grid_ceiling_thick_and_thin_structures():
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    block = np.zeros((30, 30, 30), bool)
    block[6:24, 6:24, 6:24] = True  # 18 mm cube on a 1 mm grid: survives 3 mm voxels
    assert grid_ceiling(block, affine, (3.0, 3.0, 3.0)) > 0.9
    plane = np.zeros((30, 30, 30), bool)
    plane[:, :, 14] = True  # 1 mm thick: lost in 3 mm voxels
    assert grid_ceiling(plane, affine, (3.0, 3.0, 3.0)) < 0.5
    assert grid_ceiling(plane, affine, (1.0, 1.0, 1.0)) == 1.0


@pytest.mark.slow
@pytest.mark.realdata
def test_report_on_a_real_case(tmp_path, shared_data, capsys):
    model = export_model(build_model(NET), tmp_path / "m",
                         concepts=["vertebrae_l3", "vertebrae_l4"], text_encoder="base")
    table = evaluate_model(model, [CARDS / "spine_crop_tptbox.yaml"], shared=shared_data.parent)
    assert sorted(table["concept"]) == ["vertebrae_l3", "vertebrae_l4"]
    assert table["in_reference"].all(), "the spine crop holds both vertebrae"
    assert table["dice"].between(0, 1).all() and (table["reference_voxels"] > 0).all()
    assert table["grid_ceiling"].between(0, 1).all() and set(table["split"]) == {"train"}
    assert evaluate_model(model, [CARDS / "spine_crop_tptbox.yaml"], shared=shared_data.parent, splits=["val"]).empty
    assert sat_main(["evaluate", "model", str(CARDS / "spine_crop_tptbox.yaml"), "--model", str(model), "--shared", str(shared_data.parent),
                 "--out", str(tmp_path / "r.csv"), "--overlap", "0.5"]) == 0
    assert "spine_crop_tptbox/tptbox_spine" in capsys.readouterr().out and (tmp_path / "r.csv").is_file()


@pytest.mark.realdata
def test_report_refuses_a_case_the_model_would_see_as_a_plane(tmp_path, shared_data):
    from sat.errors import InputError

    model = export_model(build_model(NET), tmp_path / "m",
                         concepts=["liver"], text_encoder="base")
    with pytest.raises(InputError, match="3 slices of 1.00 mm.*give at least 5 slices"):  # 3 mm at a 3 mm grid
        evaluate_model(model, [CARDS / "dcmqi_3slice.yaml"], shared=shared_data.parent)


def test_report_reads_a_dataset_outside_shared_with_root(tmp_path, capsys):
    import nibabel as nib
    import yaml

    data = tmp_path / "fetched"
    data.mkdir()
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    nib.save(nib.Nifti1Image(np.full((20, 20, 12), 40, np.int16), affine), data / "ct.nii.gz")
    mask = np.zeros((20, 20, 12), np.uint8)
    mask[5:15, 5:15, 3:9] = 1
    nib.save(nib.Nifti1Image(mask, affine), data / "liver.nii.gz")
    card = {"name": "fetched", "modality": "ct", "region": "abdomen", "license": "CC-BY-4.0",
            "source": "https://example.org", "citation": "Someone 2024", "layout": "files",
            "labels": {1: {"name": "liver", "concept": "liver"}},
            "cases": [{"id": "c1", "image": "ct.nii.gz", "labels": [{"file": "liver.nii.gz", "values": {1: 1}}]}]}
    (tmp_path / "fetched.yaml").write_text(yaml.safe_dump(card))
    model = export_model(build_model(NET), tmp_path / "m",
                         concepts=["liver"], text_encoder="base")
    assert sat_main(["evaluate", "model", str(tmp_path / "fetched.yaml"), "--model", str(model), "--root", f"fetched={data}"]) == 0
    out = capsys.readouterr().out
    assert "fetched/c1" in out and "liver" in out
