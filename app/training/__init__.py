"""Training dropout MLPs for mcdrop (``mcdrop train``); never imported by the server."""

from __future__ import annotations

from app.training.folder import write_model_folder
from app.training.mlp import Hyper, TrainConfig, fit, hyper_grid, weight_decay
from app.training.progress import ProgressBar
from app.training.search import Trained, train

__all__ = [
    "Hyper",
    "ProgressBar",
    "TrainConfig",
    "Trained",
    "fit",
    "hyper_grid",
    "train",
    "weight_decay",
    "write_model_folder",
]
