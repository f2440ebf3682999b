"""Fixtures shared by every test folder."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support import write_model


@pytest.fixture
def model_factory(tmp_path: Path) -> Callable[..., Path]:
    """Write a TinyNet model folder under a temporary models dir; returns the folder."""

    def make(name: str = "tiny", **options: Any) -> Path:
        return write_model(tmp_path / "models", name, **options)

    return make
