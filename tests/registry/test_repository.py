from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from app.errors import ModelNotFoundError, ModelNotReadyError
from app.registry.repository import ModelRepository
from app.registry.served import LoadOptions


def test_a_broken_folder_does_not_stop_the_others(model_factory: Callable[..., Path]) -> None:
    good = model_factory("good")
    broken = model_factory("broken", kwargs={"p": 0.0})
    repository = ModelRepository(good.parent, LoadOptions())
    repository.load_all()
    assert [e.name for e in repository.entries()] == ["broken", "good"]
    assert repository.get("good").name == "good"
    assert not repository.entry("broken").ready
    with pytest.raises(ModelNotReadyError, match="p = 0"):
        repository.get("broken")
    with pytest.raises(ModelNotFoundError):
        repository.get("missing")
    with pytest.raises(ModelNotFoundError, match="version '9'"):
        repository.get("good", version="9")
    assert broken.exists()


def test_missing_directory_gives_an_empty_repository(tmp_path: Path) -> None:
    repository = ModelRepository(tmp_path / "nowhere", LoadOptions())
    repository.load_all()
    assert repository.entries() == []
