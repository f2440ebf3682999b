"""The allocator setting: what mcdrop asks of the C library, and that the server asks it.

How many page faults the setting saves is the machine's C library's business and is measured by
``bench/allocator.py``, not asserted here.
"""

from __future__ import annotations

import ctypes
import sys
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.config import load_settings
from app.engine import allocator
from app.engine.allocator import MMAP_THRESHOLD_MAX, retain_freed_memory
from app.main import create_app


class _FakeMallopt:
    """Records mallopt calls and answers like glibc (1 = accepted) or a refusing C library;
    takes ctypes' argtypes/restype like a foreign function."""

    argtypes: list[Any]
    restype: Any

    def __init__(self, answer: int) -> None:
        self.calls: list[tuple[int, int]] = []
        self.answer = answer

    def __call__(self, option: int, value: int) -> int:
        self.calls.append((option, value))
        return self.answer


class _FakeLibc:
    def __init__(self, answer: int = 1) -> None:
        self.mallopt = _FakeMallopt(answer)
        self.calls = self.mallopt.calls


def _fake_libc(monkeypatch: pytest.MonkeyPatch, answer: int = 1) -> _FakeLibc:
    libc = _FakeLibc(answer)
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setattr(ctypes, "CDLL", lambda _name: libc)
    return libc


def test_retaining_raises_the_thresholds_and_shares_one_arena(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    libc = _fake_libc(monkeypatch)
    assert retain_freed_memory(512 * 2**20) is True
    assert libc.calls == [
        (allocator.M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX),
        (allocator.M_TRIM_THRESHOLD, 512 * 2**20),
        (allocator.M_ARENA_MAX, 1),
    ]


def test_the_trim_threshold_is_capped_at_a_c_int(monkeypatch: pytest.MonkeyPatch) -> None:
    libc = _fake_libc(monkeypatch)
    retain_freed_memory(2**40)
    assert (allocator.M_TRIM_THRESHOLD, 2**31 - 1) in libc.calls


def test_a_refusing_c_library_is_reported(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _fake_libc(monkeypatch, answer=0)
    assert retain_freed_memory(2**30) is False
    assert "refused mallopt" in caplog.text


def test_zero_keeps_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    libc = _fake_libc(monkeypatch)
    assert retain_freed_memory(0) is False
    assert libc.calls == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_glibc_takes_the_three_settings() -> None:
    if not hasattr(ctypes.CDLL(None), "mallopt"):
        pytest.skip("this C library has no mallopt")
    assert retain_freed_memory(2**20) is True


@pytest.mark.parametrize("retain_mib", [0, 256])
def test_the_server_applies_the_setting_at_start(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, retain_mib: int
) -> None:
    asked: list[Any] = []
    monkeypatch.setattr("app.main.retain_freed_memory", asked.append)
    app = create_app(load_settings(models_dir=tmp_path, allocator_retain_mib=retain_mib))
    assert asked == []
    with TestClient(app):
        assert asked == [retain_mib * 2**20]
