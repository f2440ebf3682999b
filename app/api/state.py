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

    def record_models(self) -> None:
        """Set the model readiness and load-time gauges from the repository."""
        for entry in self.repository.entries():
            self.metrics.model_ready.labels(entry.name).set(1 if entry.ready else 0)
            if entry.model is not None:
                self.metrics.model_load_seconds.labels(entry.name).set(entry.model.load_seconds)

    @property
    def ready(self) -> bool:
        """Ready to serve: start-up done, not shutting down, at least one model loaded."""
        remote = self.dataplane.remote
        if remote is not None and remote.lost:
            return False  # the inference process is gone
        return self.started and not self.shutting_down and bool(self.repository.ready_models())
