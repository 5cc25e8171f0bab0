"""Shared fixtures. Real volumes are read from ../shared/data (never copied)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
sys.path.insert(0, str(ROOT / "examples"))  # the phantom of the demo (examples/phantom.py)


def _require_shared() -> bool:
    return os.environ.get("SAT_REQUIRE_SHARED_DATA", "") not in ("", "0")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of ../shared/data; skips (or fails under SAT_REQUIRE_SHARED_DATA=1) when absent."""
    path = SHARED / "data"
    if not path.is_dir():
        if _require_shared():
            pytest.fail(f"SAT_REQUIRE_SHARED_DATA=1 but {path} is missing")
        pytest.skip("real data not found beside the project (../shared/data)")
    return path


@pytest.fixture(scope="session")
def shared_terms() -> Path:
    """Path of ../shared/terms; skips (or fails under SAT_REQUIRE_SHARED_DATA=1) when absent."""
    path = SHARED / "terms"
    if not path.is_dir():
        if _require_shared():
            pytest.fail(f"SAT_REQUIRE_SHARED_DATA=1 but {path} is missing")
        pytest.skip("terminology sources not found beside the project (../shared/terms)")
    return path


def _save_tiny_model(folder: Path, concepts, *, spacing=(12.0, 12.0, 12.0)) -> Path:
    """A randomly initialised, very small SAT network saved like the shipped ones (seeded)."""
    import torch

    import sat.model

    config = sat.model.get_config("sat-tiny").replace(
        preset="test-tiny", widths=(8, 16, 32), depths=(1, 1, 1), decoder_depths=(1, 1), query_dim=32,
        heads=4, ffn_dim=64, token_levels=2, mask_hidden=16, deep_supervision=1, patch_size=(32, 32, 32),
        spacing=tuple(spacing))
    torch.manual_seed(0)
    extra = {"text_encoder": "base", "concepts": list(concepts)}
    return sat.model.save_pretrained(sat.model.build_model(config), folder, extra=extra)


@pytest.fixture(scope="session")
def tiny_model():
    """Factory ``tiny_model(folder, concepts, spacing=...)`` -> folder of a seeded random tiny model."""
    return _save_tiny_model


@pytest.fixture(scope="module")
def segmenter(model_dir):
    """The module's ``model_dir`` fixture (a saved model folder) loaded on the CPU."""
    from sat import api

    return api.load_model(model_dir, device="cpu")


@pytest.fixture(scope="module")
def phantom():
    """A seeded CT phantom of the trunk at 6 mm (``examples/phantom.py``)."""
    from phantom import make_phantom

    return make_phantom(spacing=(6.0, 6.0, 6.0), seed=0)


@pytest.fixture(scope="session")
def demo():
    """The demo script ``examples/demo.py`` (run by ``make demo``) as a module."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("sat_demo", ROOT / "examples" / "demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
