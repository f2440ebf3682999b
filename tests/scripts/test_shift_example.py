"""The breast-cancer shift case, small and fast: the shift score finds the x1.8 rows, MI not."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.support import load_script


def test_shift_score_catches_scaled_measurements(tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    torch.set_num_threads(1)
    example = load_script("shift_example")
    result = example.breast_cancer(tmp_path, epochs=40, hidden=16)
    areas = result["auroc"]
    assert areas["shift_score"] >= 0.95
    assert areas["mutual_information"] < 0.6  # the failure the shift score is there for
    flags = result["flags"]
    assert flags["shifted"]["shift"] > 0.9
    assert abs(flags["test"]["shift"] - example.FALSE_ALARM) <= 0.05
    assert result["quality"]["shifted"]["accuracy"] < 0.8


def test_shift_beats_mi_on_unseen_digits_at_the_chosen_false_alarm_rate(tmp_path: Path) -> None:
    """The committed digits-0to4 example: shift AUROC above MI's 0.928, false alarms on the
    test digits 0-4 within 2 points of the 5% chosen on the held-out ones."""
    import shutil

    torch.set_num_threads(1)
    example = load_script("shift_example")
    folder = tmp_path / "digits-0to4-mlp"
    shutil.copytree(example.DIGITS_FOLDER, folder)
    result = example.digits(folder, tmp_path)
    areas = result["auroc"]
    assert areas["shift_score"] >= 0.95 and areas["shift_score"] > areas["mutual_information"]
    assert abs(result["flags"]["in"]["shift"] - example.FALSE_ALARM) <= 0.02
    assert result["flags"]["out"]["shift"] > 0.7


def test_lac_sets_cover_with_about_one_class_on_the_confident_model(tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    torch.set_num_threads(1)
    example = load_script("shift_example")
    folder = example.train_and_calibrate(tmp_path, epochs=40, hidden=16)
    sizes = example.set_sizes(*example.cancer_probs(folder))
    coverage, size = sizes["LAC"]
    assert coverage >= 0.9 and 0.85 <= size <= 1.1
    aps_coverage, aps_size = sizes["APS"]
    assert aps_coverage >= 0.9 and aps_size > size + 0.3  # the useless sets
