"""Fixtures for the original-SAT importer (imported by the conftests that use them): checkpoints in the
released layout, built from a small numeric fixture.

``official_tiny.npz`` holds a reduced-width network in the original layout (U-Net widths 8, 8,
16, 16, 32, 32; 32-d queries; 6 decoder layers; a 2-layer MPNet text tower), a 64x64x32 CT in
RAS at 1x1x3 mm whose voxels are all > 0 HU, the MPNet test vocabulary, and the sigmoid of the
original forward for its prompts (computed once with the authors' code, float32, CPU).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

FIXTURE = Path(__file__).with_name("official_tiny.npz")
WINDOW = (64, 64, 32)


def released_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """DDP names plus the ``all_modules`` aliases of every conv/norm, as the released files have them."""
    out = {}
    for key, value in state.items():
        out[f"module.{key}"] = value
        if ".convs." in key and (".conv." in key or ".norm." in key):
            alias = key.replace(".conv.", ".all_modules.0.").replace(".norm.", ".all_modules.1.")
            out[f"module.{alias}"] = value
    return out


def save_vision(state: dict[str, torch.Tensor], path: Path) -> Path:
    """A vision checkpoint: step, model_state_dict, optimizer state with a numpy learning rate."""
    optimizer = {"state": {}, "param_groups": [{"lr": np.float64(1e-4), "betas": (0.9, 0.999), "params": [0, 1]}]}
    torch.save({"step": 1234, "model_state_dict": released_layout(state), "optimizer_state_dict": optimizer}, path)
    return path


@pytest.fixture(scope="session")
def official_fixture() -> dict:
    with np.load(FIXTURE) as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="session")
def official_files(official_fixture, tmp_path_factory) -> dict[str, Path]:
    """vision.pth, text.pth, tokenizer folder, vocabulary JSON and ct.nii.gz in a temporary folder."""
    import nibabel as nib

    root = tmp_path_factory.mktemp("official")
    parts = {"vision": {}, "text": {}}
    for key, value in official_fixture.items():
        kind, _, name = key.partition("::")
        if name:
            parts[kind][name] = torch.from_numpy(np.array(value))
    text = dict(parts["text"])
    text["text_tower.biolord.embeddings.position_ids"] = torch.arange(514)[None]  # the legacy buffer
    torch.save({"step": 99, "model_state_dict": {f"module.{k}": v for k, v in text.items()}}, root / "text.pth")
    tok = root / "tokenizer"
    tok.mkdir()
    (tok / "vocab.txt").write_text("\n".join(official_fixture["vocab"].tolist()) + "\n", encoding="utf-8")
    (tok / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "MPNetTokenizer", "do_lower_case": True, "model_max_length": 512}), encoding="utf-8")
    vocab = {"all": ["ct_left kidney", "ct_right kidney", "ct_liver", "mri_liver", "ct_hepatic"],
             "dataset_based": {"a": ["ct_liver"], "b": ["ct_liver"]}}
    (root / "terminology_list.json").write_text(json.dumps(vocab), encoding="utf-8")
    image = official_fixture["image"].astype(np.float32)
    nib.save(nib.Nifti1Image(image, np.diag([1.0, 1.0, 3.0, 1.0])), root / "ct.nii.gz")
    return {"vision": save_vision(parts["vision"], root / "vision.pth"), "text": root / "text.pth",
            "tokenizer": tok, "vocabulary": root / "terminology_list.json", "ct": root / "ct.nii.gz",
            "vision_state": parts["vision"], "root": root}


@pytest.fixture(scope="session")
def imported_tiny(official_files, tmp_path_factory) -> Path:
    from sat.model.import_official import import_official

    out = tmp_path_factory.mktemp("imported") / "sat-official-tiny"
    return import_official(official_files["vision"], official_files["text"], tokenizer=official_files["tokenizer"],
                           output=out, vocabulary=official_files["vocabulary"], patch_size=WINDOW)
