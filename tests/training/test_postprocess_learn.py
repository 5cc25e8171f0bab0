"""`python -m sat.postprocess`: the connected-component rule learnt from a cache into a model folder."""

from __future__ import annotations

import json

import pytest

from sat import postprocess
from sat.errors import InputError


def test_learn_writes_the_rule_into_a_model_config(tmp_path, toy_cache):
    cache = toy_cache
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"concepts": ["liver", "spleen"], "model": {}}))
    assert postprocess.main(["--model", str(model), "--cache", str(cache)]) == 0
    config = json.loads((model / "config.json").read_text())
    assert config["postprocess"] == {"largest_component": {"liver": 1, "spleen": 1}} and config["model"] == {}
    assert [p.name for p in model.iterdir()] == ["config.json"]  # no temporary file left
    with pytest.raises(InputError, match="no training cases"):
        postprocess.learn(model, cache, datasets=["other"])
    with pytest.raises(InputError, match="config.json does not exist"):
        postprocess.learn(tmp_path / "missing", cache)
