"""What one running app holds: settings, metrics, the model repository, the data plane."""

from __future__ import annotations

from dataclasses import dataclass

from app.config import Settings
from app.dataplane import DataPlane
from app.metrics import Metrics
from app.registry.repository import ModelRepository


@dataclass
class AppState:
    """Built in the lifespan; ``started`` turns true once every model folder was tried."""

    settings: Settings
    metrics: Metrics
    repository: ModelRepository
    dataplane: DataPlane
    started: bool = False
    shutting_down: bool = False

    @property
    def ready(self) -> bool:
        """Ready to serve: start-up done, not shutting down, at least one model loaded."""
        return self.started and not self.shutting_down and bool(self.repository.ready_models())
