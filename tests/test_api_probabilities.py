"""``segment(..., probabilities=True)``: float32 probabilities on the input grid, for every model."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from phantom import make_phantom

import sat.model
from sat import api, io
from sat.cli import main


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tiny_model):
    return tiny_model(tmp_path_factory.mktemp("models") / "tiny-prob", ["liver", "kidney_left", "kidney_right"],
                      spacing=(9.0, 7.0, 11.0))


@pytest.fixture(scope="module")
def ct(tmp_path_factory):
    ph = make_phantom(spacing=(4.0, 5.0, 6.0))
    flipped = np.diag([-4.0, 5.0, 6.0, 1.0])  # not RAS: the output must still land on the input grid
    return io.save(ph.image.array[::-1].copy(), tmp_path_factory.mktemp("ct") / "ct.nii.gz", affine=flipped)


def test_probabilities_are_float32_on_the_input_grid_and_agree_with_the_masks(model_dir, ct):
    model = api.load_model(model_dir, device="cpu")
    seg = model.segment(ct, ["liver", "kidneys"], modality="ct", probabilities=True, largest_component=False,
                        threshold=0.4)
    shape = nib.load(ct).shape
    assert list(seg.probabilities) == ["liver", "kidneys"]
    for prompt in seg.prompts:
        prob = seg.probabilities[prompt]
        assert prob.dtype == np.float32 and prob.shape == shape
        assert prob.min() >= 0.0 and prob.max() <= 1.0
        undecided = np.isclose(prob, 0.4, atol=1e-6)
        assert np.array_equal((prob > 0.4)[~undecided], seg[prompt][~undecided])
    assert seg.probabilities["KIDNEYS"] is seg.probabilities["kidneys"]  # same lookup rules as the masks


def test_probabilities_only_when_asked(model_dir, ct, tmp_path):
    seg = api.load_model(model_dir, device="cpu").segment(ct, "liver", modality="ct")
    assert len(seg.probabilities) == 0
    with pytest.raises(KeyError, match="probabilities=True"):
        seg.probabilities["liver"]
    with pytest.raises(sat.SATError, match="no probabilities to save"):
        seg.save(tmp_path / "out", probabilities=True)
    assert not (tmp_path / "out").exists()  # nothing partial


def test_cli_writes_probability_maps(model_dir, ct, tmp_path):
    out = tmp_path / "out"
    assert main(["segment", str(ct), "-p", "liver", "-o", str(out), "--model", str(model_dir), "--modality", "ct",
                 "--probabilities", "--no-progress"]) == 0
    img = nib.load(out / "probabilities" / "liver.nii.gz")
    ref = nib.load(ct)
    assert img.get_data_dtype() == np.float32 and img.shape == ref.shape
    np.testing.assert_allclose(img.affine, ref.affine, atol=1e-4)
    prob = np.asarray(img.dataobj)
    mask = np.asarray(nib.load(out / "liver.nii.gz").dataobj) > 0
    decided = ~np.isclose(prob, 0.5, atol=1e-6)
    assert np.array_equal((prob > 0.5)[decided], mask[decided])
    assert 0.0 <= prob.min() <= prob.max() <= 1.0
