"""save_pretrained / load_pretrained round trip and every error path."""

from __future__ import annotations

import json

import pytest
import torch

from sat.errors import ConfigError, WeightsError
from sat.model import build_model, load_pretrained, save_pretrained
from sat.model.weights import CONFIG_NAME, WEIGHTS_NAME

from .test_model_network import SMALL


@pytest.fixture()
def saved(tmp_path):
    torch.manual_seed(0)
    net = build_model(SMALL).eval()
    save_pretrained(net, tmp_path / "m", extra={"concepts": ["liver", "spleen"], "text_encoder": "default"})
    return net, tmp_path / "m"


def test_round_trip_gives_identical_outputs(saved):
    net, folder = saved
    loaded, config = load_pretrained(folder)
    assert config["format_version"] == 1
    assert config["concepts"] == ["liver", "spleen"]
    assert loaded.config == net.config
    assert not loaded.training
    image, q = torch.randn(1, 1, 16, 16, 16), torch.randn(2, 12)
    with torch.no_grad():
        a, b = net(image, q), loaded(image, q)
    assert torch.equal(a.logits, b.logits)
    assert torch.equal(a.presence, b.presence)
    assert sorted(p.name for p in folder.iterdir()) == [CONFIG_NAME, WEIGHTS_NAME]


def test_reserved_extra_keys(tmp_path):
    with pytest.raises(ConfigError, match="reserved"):
        save_pretrained(build_model(SMALL), tmp_path, extra={"model": {}})


def _one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def test_missing_folder_and_files(tmp_path, saved):
    _, folder = saved
    with pytest.raises(WeightsError, match="does not exist") as exc:
        load_pretrained(tmp_path / "nowhere")
    _one_line(exc)
    (folder / WEIGHTS_NAME).unlink()
    with pytest.raises(WeightsError, match="no model.safetensors") as exc:
        load_pretrained(folder)
    _one_line(exc)
    (folder / CONFIG_NAME).unlink()
    with pytest.raises(WeightsError, match="no config.json"):
        load_pretrained(folder)


@pytest.mark.parametrize("content", [b"", b"garbage-not-safetensors" * 10, None])
def test_corrupt_weights(saved, content):
    _, folder = saved
    path = folder / WEIGHTS_NAME
    data = path.read_bytes()
    path.write_bytes(content if content is not None else data[: len(data) // 2])
    with pytest.raises(WeightsError, match="corrupt") as exc:
        load_pretrained(folder)
    assert "re-download" in _one_line(exc)


def test_weights_not_matching_config(tmp_path, saved):
    _, folder = saved
    config = json.loads((folder / CONFIG_NAME).read_text())
    config["model"]["widths"] = [8, 16, 32]
    (folder / CONFIG_NAME).write_text(json.dumps(config))
    with pytest.raises(WeightsError, match="does not match") as exc:
        load_pretrained(folder)
    _one_line(exc)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda c: c.update(format_version=99), "format_version"),
        (lambda c: c.pop("model"), "no 'model' section"),
        (lambda c: c["model"].update(bogus=1), "invalid model section"),
    ],
)
def test_bad_config(saved, edit, match):
    _, folder = saved
    config = json.loads((folder / CONFIG_NAME).read_text())
    edit(config)
    (folder / CONFIG_NAME).write_text(json.dumps(config))
    with pytest.raises(WeightsError, match=match) as exc:
        load_pretrained(folder)
    _one_line(exc)


def test_config_not_json(saved):
    _, folder = saved
    (folder / CONFIG_NAME).write_text("{not json")
    with pytest.raises(WeightsError, match="not valid JSON"):
        load_pretrained(folder)


def test_no_pickle_is_written(saved):
    _, folder = saved
    head = (folder / WEIGHTS_NAME).read_bytes()[:2]
    assert head != b"\x80\x04"  # pickle protocol marker
