"""The CPU allocator settings applied before inference."""

from __future__ import annotations

import ctypes
import platform

import pytest

from sat.model import allocator


@pytest.fixture
def fresh():
    allocator.tune_allocator.cache_clear()
    yield allocator.tune_allocator
    allocator.tune_allocator.cache_clear()


def test_disabled_by_environment(fresh, monkeypatch):
    monkeypatch.setenv("SAT_MALLOC_TUNING", "0")
    calls = []
    monkeypatch.setattr(ctypes, "CDLL", lambda *a, **k: calls.append(a))
    assert fresh() is False
    assert calls == []  # libc is not even opened


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt tuning is glibc-only")
def test_applied_once_on_glibc(fresh, monkeypatch):
    monkeypatch.delenv("SAT_MALLOC_TUNING", raising=False)
    assert fresh() is True
    monkeypatch.setattr(ctypes, "CDLL", lambda *a, **k: pytest.fail("libc reopened"))
    assert fresh() is True  # cached: the settings are applied once per process


def test_no_libc_is_not_an_error(fresh, monkeypatch):
    monkeypatch.delenv("SAT_MALLOC_TUNING", raising=False)

    def missing(*args, **kwargs):
        raise OSError("no libc")

    monkeypatch.setattr(ctypes, "CDLL", missing)
    assert fresh() is False
