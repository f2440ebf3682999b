"""Scoring rows in tests: a seeded ranking request built the way the commands build it."""

from __future__ import annotations

from torch import Tensor

from app.dataplane.policy import local_request
from app.engine.acquisition import Strategy
from app.engine.ranking import ScoredRows, score_rows
from app.registry.served import ServedModel


def scored_rows(
    model: ServedModel, inputs: Tensor, strategy: Strategy, n_samples: int, seed: int
) -> ScoredRows:
    """Each row's acquisition score from ``n_samples`` passes seeded with ``seed``."""
    request = local_request(model, inputs, n_samples=n_samples, seed=seed)
    return score_rows(model.predictor, request, strategy)
