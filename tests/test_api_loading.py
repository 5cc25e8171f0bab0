"""Loading models (names, folders, devices, corrupt weights), argument checks, and the model cache of
sat.segment (one load per process, thread-safe), with a tiny random model."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

import sat
import sat.model
from sat import api
from sat.errors import InputError, UnsupportedFormatError, WeightsError

CONCEPTS = ["liver", "spleen", "kidney_left", "kidney_right", "aorta"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tiny_model):
    return tiny_model(tmp_path_factory.mktemp("tiny"), CONCEPTS)


# -- model loading and arguments -----------------------------------------------------------
def test_unknown_model_lists_available():
    with pytest.raises(InputError, match="unknown model 'no-such-model'; shipped models"):
        api.load_model("no-such-model")


def test_corrupt_or_incomplete_weights(model_dir, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((model_dir / "config.json").read_text())
    (broken / "model.safetensors").write_bytes((model_dir / "model.safetensors").read_bytes()[:500])
    with pytest.raises(WeightsError):
        api.load_model(broken)
    (broken / "model.safetensors").unlink()
    with pytest.raises(WeightsError):
        api.load_model(broken)
    (broken / "config.json").write_text("{not json")
    with pytest.raises(WeightsError):
        api.load_model(broken)


def test_devices():
    assert api.resolve_device("cpu").type == "cpu"
    assert api.resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(InputError, match="unknown device"):
        api.resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="CUDA is not available"):
            api.resolve_device("cuda")


def test_threshold_overlap_and_modality_checks(segmenter, phantom):
    for kwargs, match in [({"threshold": 1.0}, "threshold"), ({"threshold": 0}, "threshold"),
                          ({"overlap": 1.0}, "overlap"), ({"modality": "xray"}, "modality")]:
        with pytest.raises(InputError, match=match):
            segmenter.segment(phantom.image, "liver", **kwargs)


def test_bad_images_give_one_line_errors(segmenter, tmp_path):
    (tmp_path / "scan.jpg").write_bytes(b"\xff\xd8")
    cases = [(tmp_path / "missing.nii.gz", InputError), (tmp_path / "scan.jpg", UnsupportedFormatError),
             ((np.zeros((5, 5)), np.eye(4)), InputError), ((np.zeros((4, 4, 4, 3)), np.eye(4)), InputError),
             ((np.full((4, 4, 4), np.nan), np.eye(4)), InputError)]
    for image, error in cases:
        with pytest.raises(error) as info:
            segmenter.segment(image, "liver")
        assert "\n" not in str(info.value)


# -- the model cache of sat.segment ---------------------------------------------------------------
def test_top_level_segment_caches_the_model(model_dir, phantom, monkeypatch):
    api._CACHE.clear()
    first = sat.segment(phantom.image, "liver", model=model_dir, device="cpu")
    cached = next(iter(api._CACHE.values()))
    second = sat.segment(phantom.image, ["spleen", "aorta"], model=model_dir, device="cpu")
    assert next(iter(api._CACHE.values())) is cached and len(api._CACHE) == 1
    assert first.prompts == ["liver"] and second.prompts == ["spleen", "aorta"]
    assert isinstance(sat.segment(phantom.image, "liver", model=cached), sat.Segmentation)
    api._CACHE.clear()


def _in_threads(n: int, target) -> list[BaseException]:
    """Run ``target`` in ``n`` threads started together; returns what they raised."""
    errors, barrier = [], threading.Barrier(n)

    def run():
        try:
            barrier.wait()
            target()
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return errors


def test_concurrent_calls_load_the_model_once(model_dir, segmenter, monkeypatch):
    loads, used = [], []

    def slow_load(name, *, device="auto"):
        loads.append(name)
        time.sleep(0.2)  # every other thread arrives while this one is loading
        return segmenter

    monkeypatch.setattr(api, "load_model", slow_load)
    monkeypatch.setattr(api.Segmenter, "segment", lambda self, *a, **k: used.append(self))
    api.clear_cache()
    assert _in_threads(4, lambda: sat.segment("ct.nii.gz", "liver", model=model_dir, device="cpu")) == []
    assert len(loads) == 1 and len(used) == 4 and all(s is segmenter for s in used)
    api.clear_cache()


def test_clear_cache_while_a_call_loads_and_uses_the_model(model_dir, segmenter, monkeypatch):
    loading, release, used = threading.Event(), threading.Event(), []

    def blocking_load(name, *, device="auto"):
        loading.set()
        release.wait(10)
        return segmenter

    monkeypatch.setattr(api, "load_model", blocking_load)
    monkeypatch.setattr(api.Segmenter, "segment", lambda self, *a, **k: used.append(self))
    api.clear_cache()
    caller = threading.Thread(target=lambda: sat.segment("ct.nii.gz", "liver", model=model_dir, device="cpu"))
    caller.start()
    assert loading.wait(10)
    clearer = threading.Thread(target=api.clear_cache)  # waits for the load, then clears
    clearer.start()
    release.set()
    caller.join(10)
    clearer.join(10)
    assert used == [segmenter] and api._CACHE == {}
    assert _in_threads(4, lambda: (api.clear_cache(), sat.segment("ct", "liver", model=model_dir, device="cpu"))) == []
    assert len(used) == 5 and all(s is segmenter for s in used)


def test_a_failed_load_is_not_cached(model_dir, segmenter, monkeypatch):
    outcomes = iter([WeightsError("broken"), segmenter])

    def load(name, *, device="auto"):
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    monkeypatch.setattr(api, "load_model", load)
    monkeypatch.setattr(api.Segmenter, "segment", lambda self, *a, **k: self)
    api.clear_cache()
    with pytest.raises(WeightsError):
        sat.segment("ct.nii.gz", "liver", model=model_dir, device="cpu")
    assert sat.segment("ct.nii.gz", "liver", model=model_dir, device="cpu") is segmenter
    api.clear_cache()
