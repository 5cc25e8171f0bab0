"""Fixtures: synthetic terminology sources and curated folders (no ../shared needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
from kt_helpers import write_curated, write_sources


@pytest.fixture()
def mini_sources(tmp_path: Path) -> Path:
    return write_sources(tmp_path / "terms")


@pytest.fixture()
def mini_curated(tmp_path: Path) -> Path:
    return write_curated(tmp_path / "knowledge_tree")
