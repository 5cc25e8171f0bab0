"""Delta export: round trip (load == trained), size, and every corrupt/missing case -> WeightsError."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from sat.errors import WeightsError
from sat.text import TextEncoder, load_encoder
from sat.text.delta import CONFIG, WEIGHTS, delta_size, load_delta, save_delta

PROMPTS = ["left kidney", "L3 vertebra", "a free-text prompt about the spleen"]


@pytest.fixture(scope="module")
def trained() -> TextEncoder:
    """An encoder whose delta tensors differ from the base (as after training)."""
    encoder = TextEncoder(None, tuned_layers=1)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for key in encoder.delta_keys():
            tensor = encoder.get_parameter(key)
            tensor.add_(0.02 * torch.randn(tensor.shape, generator=gen))
    return encoder


@pytest.fixture(scope="module")
def saved(trained, tmp_path_factory):
    return save_delta(trained, tmp_path_factory.mktemp("delta"), extra={"training": {"steps": 3}})


def test_round_trip_equals_trained(trained, saved):
    loaded = load_encoder(saved)
    for modality in (None, "ct", "pet"):  # float16 storage: equal to ~1e-3
        torch.testing.assert_close(loaded.encode(PROMPTS, modality=modality), trained.encode(PROMPTS, modality=modality),
                                   atol=2e-3, rtol=0)
    for key in trained.delta_keys():
        torch.testing.assert_close(loaded.get_parameter(key), trained.get_parameter(key).half().float(), atol=0, rtol=0)
    assert loaded.metadata["training"] == {"steps": 3}
    assert 3 * 2**20 < delta_size(saved) <= 10 * 2**20
    assert json.loads((saved / CONFIG).read_text())["format_version"] == 1


def test_delta_over_10_mb_is_refused(tmp_path):
    with pytest.raises(WeightsError, match="10 MB"):
        save_delta(TextEncoder(None, tuned_layers=3), tmp_path)


def _copy(saved, tmp_path):
    target = tmp_path / "delta"
    shutil.copytree(saved, target)
    return target


def test_corrupt_weights(saved, tmp_path):
    target = _copy(saved, tmp_path)
    (target / WEIGHTS).write_bytes(b"\x00garbage" * 10)
    with pytest.raises(WeightsError, match="corrupt"):
        load_delta(target)


def test_missing_weights(saved, tmp_path):
    target = _copy(saved, tmp_path)
    (target / WEIGHTS).unlink()
    with pytest.raises(WeightsError, match="missing"):
        load_encoder(target)


@pytest.mark.parametrize(
    ("content", "match"),
    [("{not json", "not valid JSON"), ('{"kind": "other"}', "not a SAT text delta"),
     ('{"kind": "sat-text-delta", "format_version": 99}', "format_version")],
)
def test_bad_config(saved, tmp_path, content, match):
    target = _copy(saved, tmp_path)
    (target / CONFIG).write_text(content)
    with pytest.raises(WeightsError, match=match):
        load_delta(target)


def test_missing_config(saved, tmp_path):
    target = _copy(saved, tmp_path)
    (target / CONFIG).unlink()
    with pytest.raises(WeightsError, match="config missing"):
        load_delta(target)


def test_config_without_a_setting(saved, tmp_path):
    target = _copy(saved, tmp_path)
    config = json.loads((target / CONFIG).read_text())
    del config["tuned_layers"]
    (target / CONFIG).write_text(json.dumps(config))
    with pytest.raises(WeightsError, match="lacks"):
        load_delta(target)


def test_other_base_or_wrong_tensors(saved, tmp_path):
    target = _copy(saved, tmp_path)
    config = json.loads((target / CONFIG).read_text())
    (target / CONFIG).write_text(json.dumps({**config, "base_fingerprint": "0" * 16}))
    with pytest.raises(WeightsError, match="another base"):
        load_delta(target)
    (target / CONFIG).write_text(json.dumps({**config, "tuned_layers": 0}))
    with pytest.raises(WeightsError, match="does not match"):
        load_delta(target)


def test_missing_default_delta_says_how_to_fix(monkeypatch, tmp_path):
    import sat.text.delta as delta

    monkeypatch.setattr(delta, "resource_dir", lambda name: tmp_path / name)
    with pytest.raises(WeightsError, match="sat train text"):
        load_encoder("default")
