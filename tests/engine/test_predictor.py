from __future__ import annotations

import os

import pytest
import torch

from app.engine import predictor
from app.engine.predictor import PredictionRequest, fresh_seed


def test_fresh_seeds_are_63_bit_and_distinct() -> None:
    seeds = {fresh_seed() for _ in range(1000)}
    assert len(seeds) == 1000
    assert all(0 <= seed < 2**63 for seed in seeds)


def test_a_forked_process_gets_a_generator_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    _, inherited = predictor._SEEDS
    monkeypatch.setattr(predictor, "_SEEDS", (os.getpid() + 1, inherited))  # as after a fork
    fresh_seed()
    pid, generator = predictor._SEEDS
    assert pid == os.getpid() and generator is not inherited


def test_a_request_seed_is_kept_and_a_missing_one_drawn() -> None:
    x = torch.zeros(1, 3)
    assert PredictionRequest(x, 10, 0.95, seed=7).resolved_seed() == 7
    drawn = {PredictionRequest(x, 10, 0.95).resolved_seed() for _ in range(50)}
    assert len(drawn) == 50
