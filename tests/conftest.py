"""Fixtures shared by every test folder."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.config import load_settings
from app.main import create_app
from tests.support import BUNDLED_MODELS, write_model


@pytest.fixture
def model_factory(tmp_path: Path) -> Callable[..., Path]:
    """Write a TinyNet model folder under a temporary models dir; returns the folder."""

    def make(name: str = "tiny", **options: Any) -> Path:
        return write_model(tmp_path / "models", name, **options)

    return make


@pytest.fixture
def client_for() -> Iterator[Callable[..., TestClient]]:
    """Start an app (lifespan included) on a models dir; closed after the test."""
    clients: list[TestClient] = []

    def start(models_dir: Path = BUNDLED_MODELS, **settings: Any) -> TestClient:
        app = create_app(load_settings(models_dir=models_dir, **settings))
        client = TestClient(app, raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        return client

    yield start
    for client in clients:
        client.__exit__(None, None, None)
