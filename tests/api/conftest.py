from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient


@pytest.fixture
def demo_client(client_for: Callable[..., TestClient]) -> TestClient:
    """The bundled demo models."""
    return client_for()
