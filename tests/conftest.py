"""Shared fixtures. Real volumes are read from ../shared/data (never copied)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


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
