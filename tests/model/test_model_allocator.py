"""The opt-in CPU allocator tuning: never applied by importing SAT or running inference."""

from __future__ import annotations

import ctypes
import json
import platform
import subprocess
import sys
import textwrap

import pytest

from sat.model import allocator

# Runs in a fresh interpreter: records every mallopt call made after SAT and torch are imported.
_SPY = textwrap.dedent("""
    import ctypes, json, sys
    import torch
    import sat, sat.api, sat.cli, sat.model
    from sat.model import allocator, build_model, lean_forward, predict

    calls, real_cdll = [], ctypes.CDLL

    class Spy:
        def __init__(self, *args, **kwargs):
            self._lib = real_cdll(*args, **kwargs)

        def __getattr__(self, name):
            attr = getattr(self._lib, name)
            if name != "mallopt":
                return attr

            def mallopt(*args):
                calls.append(args)
                return attr(*args)

            return mallopt

    ctypes.CDLL = Spy
    net = build_model("sat-tiny").eval()
    predict(net, torch.zeros(1, 1, 40, 40, 20), torch.randn(2, 384))
    lean_forward(net, torch.zeros(1, 1, 32, 32, 16), torch.randn(2, 384))
    before = (len(calls), allocator.is_tuned())
    tuned = allocator.tune()
    print(json.dumps({"before": before, "tuned": tuned, "after": len(calls)}))
""")


@pytest.fixture
def fresh(monkeypatch):
    monkeypatch.setattr(allocator, "_applied", False)
    return allocator.tune


def test_importing_and_inference_leave_the_allocator_alone():
    out = subprocess.run([sys.executable, "-c", _SPY], capture_output=True, encoding="utf-8", check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["before"] == [0, False]  # SAT never calls mallopt on its own
    if platform.libc_ver()[0] == "glibc":
        assert result["tuned"] is True and result["after"] == 3  # only when asked


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt tuning is glibc-only")
def test_tune_applies_once(fresh, monkeypatch):
    set_to = []
    monkeypatch.setattr(ctypes, "CDLL", lambda *a, **k: type("L", (), {"mallopt": _Fn(set_to)})())
    assert allocator.is_tuned() is False
    assert fresh() is True and allocator.is_tuned() is True
    assert dict(set_to) == {-3: allocator.MMAP_THRESHOLD, -1: allocator.TRIM_THRESHOLD, -2: allocator.TOP_PAD}
    monkeypatch.setattr(ctypes, "CDLL", lambda *a, **k: pytest.fail("libc reopened"))
    assert fresh() is True  # applied once per process


def test_no_libc_is_not_an_error(fresh, monkeypatch):
    def missing(*args, **kwargs):
        raise OSError("no libc")

    monkeypatch.setattr(ctypes, "CDLL", missing)
    assert fresh() is False and allocator.is_tuned() is False


def test_rejected_settings_are_reported(fresh, monkeypatch):
    monkeypatch.setattr(ctypes, "CDLL", lambda *a, **k: type("L", (), {"mallopt": _Fn([], result=0)})())
    assert fresh() is False and allocator.is_tuned() is False


class _Fn:
    """A stand-in for a ctypes function: records (key, value) and returns ``result``."""

    def __init__(self, sink: list, result: int = 1) -> None:
        self.sink, self.result, self.argtypes, self.restype = sink, result, None, None

    def __call__(self, key: int, value: int) -> int:
        self.sink.append((key, value))
        return self.result
