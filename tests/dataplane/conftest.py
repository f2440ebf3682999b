"""Fixtures of the data-plane tests."""

from __future__ import annotations

import pytest

from app.registry.repository import ModelRepository
from app.registry.served import LoadOptions
from tests.support import BUNDLED_MODELS


@pytest.fixture(scope="module")
def repository() -> ModelRepository:
    """The bundled models, loaded once per test module."""
    models = ModelRepository(BUNDLED_MODELS, LoadOptions())
    models.load_all()
    return models
