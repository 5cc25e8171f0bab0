"""The one test against known-good outputs of the shipped weights (sat-tiny on the seeded phantom).

The expected values live in tests/known_good_sat_tiny.json, written by
``python benchmarks/make_known_good.py`` whenever the shipped weights change. Only outputs that
overlap their reference are pinned, so a wrong answer is never frozen in; laterality is also
tested in world coordinates on real people (tests/test_laterality_realdata.py).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from sat import api

ROOT = Path(__file__).resolve().parents[1]
KNOWN_GOOD = ROOT / "tests" / "known_good_sat_tiny.json"


def _script():
    spec = importlib.util.spec_from_file_location("make_known_good", ROOT / "benchmarks" / "make_known_good.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_shipped_sat_tiny_matches_known_good_outputs():
    if "sat-tiny" not in api.shipped_models():
        pytest.skip("shipped weights sat/resources/models/sat-tiny are not installed yet")
    if not KNOWN_GOOD.is_file():
        pytest.fail(f"{KNOWN_GOOD.name} is missing: run `python benchmarks/make_known_good.py` and commit it")
    expected = json.loads(KNOWN_GOOD.read_text())
    script = _script()
    assert list(expected["prompts"]) == script.PROMPTS
    for prompt, want in expected["prompts"].items():  # never pin an answer that misses its structure
        assert want["dice"] is None or want["dice"] >= script.MIN_DICE, (prompt, want)
    sha = script.weights_sha256(api.model_dir("sat-tiny"))
    assert sha == expected["weights_sha256"], (
        "the shipped sat-tiny weights changed since the known-good outputs were recorded; "
        "check them and rerun `python benchmarks/make_known_good.py`")
    got = script.compute()["prompts"]
    assert list(got) == list(expected["prompts"])
    for prompt, want in expected["prompts"].items():
        have = got[prompt]
        assert have["concept"] == want["concept"], prompt
        assert abs(have["voxels"] - want["voxels"]) <= max(10, 0.01 * want["voxels"]), (prompt, have, want)
        if want["dice"] is not None:
            assert have["dice"] == pytest.approx(want["dice"], abs=0.01), prompt
