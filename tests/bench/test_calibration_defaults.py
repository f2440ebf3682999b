"""The benchmark's own choices: random splits, and `mcdrop train`'s pick among grid runs."""

from __future__ import annotations

import torch

from app.training.noise import HeldOutCheck
from bench.calibration_defaults import Outcome, default_choice, split_rows


def _outcome(dropout: float, scale: float, validation: float, test: float) -> Outcome:
    return Outcome(dropout, scale, validation, HeldOutCheck(60, 1.0, test, 0.95), 0.0, 0.0)


def test_splits_are_seeded_disjoint_and_one_fifth_test() -> None:
    kept, held = split_rows(301, seed=3)
    assert held.shape[0] == 60 and kept.shape[0] == 241
    assert sorted(torch.cat([kept, held]).tolist()) == list(range(301))
    again = split_rows(301, seed=3)
    assert torch.equal(again[0], kept) and torch.equal(again[1], held)
    assert not torch.equal(split_rows(301, seed=4)[1], held)


def test_default_choice_is_the_default_grids_best_validation_point() -> None:
    runs = [
        _outcome(0.01, 1.0, -1.0, -0.1),  # best validation and test, but outside the default grid
        _outcome(0.05, 0.01, -1.5, -1.2),
        _outcome(0.05, 1.0, -1.4, -1.6),  # best validation of the default grid
        _outcome(0.1, 0.01, -1.45, -1.1),  # best test of the default grid: not what train sees
        _outcome(0.1, 1.0, -1.6, -1.3),
    ]
    chosen = default_choice(runs)
    assert (chosen.dropout, chosen.length_scale) == (0.05, 1.0)


def test_default_choice_ties_go_to_the_first_grid_point_as_in_train() -> None:
    runs = [_outcome(0.05, 0.01, -1.0, -2.0), _outcome(0.05, 1.0, -1.0, -1.0)]
    assert default_choice(runs).length_scale == 0.01


def test_covered_rows_from_the_coverage() -> None:
    assert _outcome(0.05, 1.0, 0.0, 0.0).covered == 57  # 0.95 of 60
