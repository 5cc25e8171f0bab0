"""Fixtures of the data tests (helpers live in datafixtures.py)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def write_card(tmp_path):
    """Write a card dict to tmp_path/cards/<name>.yaml and return the path."""
    import yaml

    def _write(data: dict) -> Path:
        path = tmp_path / "cards" / f"{data['name']}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    return _write
