"""Fixtures for the training tests: a toy standardized cache, a minuscule network, a recipe."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from safetensors.torch import save_file

CONCEPTS = ("liver", "spleen", "aorta")  # the toy dataset labels all three; aorta never appears
TEXT_DIM = 8

TINY_NET = {
    "preset": "test-micro", "widths": [4, 8, 8], "depths": [1, 1, 1], "decoder_depths": [1, 1],
    "text_dim": TEXT_DIM, "query_dim": 8, "decoder_layers": 1, "heads": 2, "ffn_dim": 16,
    "token_levels": 1, "mask_hidden": 8, "deep_supervision": 1, "spacing": [3.0, 3.0, 3.0],
    "patch_size": [16, 16, 8],
}


def _toy_case(rng: np.random.Generator, shape=(40, 36, 24)) -> tuple[np.ndarray, np.ndarray]:
    label = np.zeros(shape, np.uint16)
    label[6:18, 8:20, 4:14] = 1  # "liver" on the low-x side
    label[26:32, 10:16, 8:16] = 2  # "spleen" on the high-x side
    image = rng.normal(0, 0.1, shape).astype(np.float32) - 1.0
    image[label == 1] += 2.0
    image[label == 2] += 3.0
    return image.astype(np.float16), label


def write_toy_cache(root: Path, *, n_train: int = 2) -> Path:
    """CACHE/index.csv + npz in the CONTRACTS format, plus a query table (queries.safetensors)."""
    rng = np.random.default_rng(0)
    rows = []
    (root / "toy").mkdir(parents=True, exist_ok=True)
    for i in range(n_train + 1):
        image, label = _toy_case(rng)
        name = f"case{i}"
        np.savez_compressed(root / "toy" / f"{name}.npz", image=image, label=label,
                            values=np.array([1, 2, 3]), concepts=np.array(CONCEPTS))
        rows.append({"dataset": "toy", "case": name, "modality": "ct", "region": "abdomen",
                     "split": "val" if i == n_train else "train", "file": f"toy/{name}.npz",
                     "shape": "x".join(map(str, label.shape)), "spacing": "3,3,3",
                     "concepts": "liver;spleen", "labelled": ";".join(CONCEPTS)})
    pd.DataFrame(rows).to_csv(root / "index.csv", index=False)
    gen = torch.Generator().manual_seed(0)
    table = {f"ct/{c}": torch.nn.functional.normalize(torch.randn(3, TEXT_DIM, generator=gen), dim=1)
             for c in CONCEPTS}
    save_file(table, str(root / "queries.safetensors"))
    return root


@pytest.fixture
def toy_cache(tmp_path: Path) -> Path:
    return write_toy_cache(tmp_path / "cache")


def write_recipe(path: Path, cache: Path, run: Path, *, max_steps: int = 6, steps_per_epoch: int = 2) -> Path:
    recipe = {
        "seed_everything": 0,
        "trainer": {
            "accelerator": "cpu", "devices": 1, "max_steps": max_steps, "max_epochs": -1,
            "default_root_dir": str(run), "logger": False, "enable_progress_bar": False,
            "enable_model_summary": False, "num_sanity_val_steps": 0, "check_val_every_n_epoch": 2,
            "callbacks": [
                {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                 "init_args": {"dirpath": str(run / "checkpoints"), "every_n_epochs": 1, "save_last": True,
                               "save_on_train_epoch_end": True,
                               "save_top_k": -1}},
                {"class_path": "sat.training.callbacks.Throughput"},
            ],
        },
        "model": {
            "net": {"class_path": "sat.model.SATNet", "init_args": {"config": TINY_NET}},
            "lr": 0.01, "warmup_steps": 2,
        },
        "data": {
            "cache": str(cache), "text_encoder": "test", "query_cache": str(cache / "queries.safetensors"),
            "patch_size": [16, 16, 8], "batch_size": 2, "queries_per_sample": 3,
            "steps_per_epoch": steps_per_epoch, "min_thin": 3,
        },
    }
    path.write_text(yaml.safe_dump(recipe))
    return path
