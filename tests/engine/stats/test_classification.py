"""Tests for the classification uncertainty statistics, against closed-form answers."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from app.engine.stats.classification import (
    ClassificationStats,
    class_std,
    classification_stats,
    confidence,
    entropy,
    expected_entropy,
    mean_probabilities,
    mutual_information,
    predicted_class,
    predictive_entropy,
    variation_ratio,
)

LN2 = math.log(2.0)


def _probs(passes: list[list[list[float]]]) -> torch.Tensor:
    return torch.tensor(passes, dtype=torch.float64)


def _rows(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)


def _h(*p: float) -> float:
    return -sum(x * math.log(x) for x in p if x > 0)


def test_fully_disagreeing_one_hot_passes() -> None:
    probs = _probs([[[1.0, 0.0]], [[0.0, 1.0]]])
    assert mutual_information(probs).tolist() == pytest.approx([LN2], abs=1e-15)
    assert predictive_entropy(probs).tolist() == pytest.approx([LN2], abs=1e-15)
    assert expected_entropy(probs).tolist() == [0.0]
    assert variation_ratio(probs).tolist() == [0.5]


def test_one_hot_passes_in_float32_have_exact_zero_entropy() -> None:
    probs = torch.tensor([[[1.0, 0.0, 0.0]], [[0.0, 0.0, 1.0]]], dtype=torch.float32)
    assert expected_entropy(probs).tolist() == [0.0]
    assert not torch.isnan(predictive_entropy(probs)).any()


def test_identical_passes_have_zero_mutual_information() -> None:
    row = [[0.2, 0.5, 0.3], [0.6, 0.3, 0.1]]
    probs = _probs([row, row, row])
    assert mutual_information(probs).tolist() == pytest.approx([0.0, 0.0], abs=1e-15)
    torch.testing.assert_close(expected_entropy(probs), predictive_entropy(probs))
    assert variation_ratio(probs).tolist() == [0.0, 0.0]
    assert class_std(probs).tolist() == [[0.0] * 3] * 2


@pytest.mark.parametrize("n_classes", [1, 2, 3, 10, 1000])
def test_uniform_distribution_has_entropy_ln_c(n_classes: int) -> None:
    p = torch.full((4, n_classes), 1.0 / n_classes, dtype=torch.float64)
    torch.testing.assert_close(
        entropy(p), torch.full((4,), math.log(n_classes), dtype=torch.float64)
    )


def test_entropy_keeps_leading_shape_and_ignores_zero_probabilities() -> None:
    p = torch.tensor([[[0.5, 0.5, 0.0]], [[0.25, 0.75, 0.0]]], dtype=torch.float64)
    result = entropy(p)
    assert result.shape == (2, 1)
    assert result[:, 0].tolist() == pytest.approx([LN2, _h(0.25, 0.75)], abs=1e-15)


def test_hand_computed_two_pass_example() -> None:
    # Passes [0.9, 0.1] and [0.4, 0.6]: p̄ = [0.65, 0.35], the votes split 1-1.
    probs = _probs([[[0.9, 0.1]], [[0.4, 0.6]]])
    total = _h(0.65, 0.35)
    aleatoric = (_h(0.9, 0.1) + _h(0.4, 0.6)) / 2

    torch.testing.assert_close(mean_probabilities(probs), _rows([[0.65, 0.35]]))
    torch.testing.assert_close(class_std(probs), _rows([[0.25, 0.25]]))
    assert predictive_entropy(probs).tolist() == pytest.approx([total], abs=1e-15)
    assert expected_entropy(probs).tolist() == pytest.approx([aleatoric], abs=1e-15)
    assert mutual_information(probs).tolist() == pytest.approx([total - aleatoric], abs=1e-15)
    assert variation_ratio(probs).tolist() == [0.5]
    assert predicted_class(probs).tolist() == [0]
    assert predicted_class(probs).dtype == torch.long
    assert confidence(probs).tolist() == pytest.approx([0.65], abs=1e-15)

    stats = classification_stats(probs, ci_level=0.5)
    # Two passes, quantiles 0.25 and 0.75: a quarter of the way in from each end.
    torch.testing.assert_close(stats.ci_lower, _rows([[0.525, 0.225]]))
    torch.testing.assert_close(stats.ci_upper, _rows([[0.775, 0.475]]))
    assert stats.predicted_class.tolist() == [0]
    assert stats.confidence.tolist() == pytest.approx([0.65], abs=1e-15)
    assert stats.predictive_entropy.tolist() == pytest.approx([total], abs=1e-15)
    assert stats.expected_entropy.tolist() == pytest.approx([aleatoric], abs=1e-15)
    assert stats.mutual_information.tolist() == pytest.approx([total - aleatoric], abs=1e-15)
    assert stats.variation_ratio.tolist() == [0.5]


def test_classification_stats_agrees_with_the_single_functions() -> None:
    rng = np.random.default_rng(3)
    probs = torch.from_numpy(rng.dirichlet([0.5] * 4, size=(6, 5)))
    stats = classification_stats(probs, ci_level=0.9)
    assert isinstance(stats, ClassificationStats)
    torch.testing.assert_close(stats.mean, mean_probabilities(probs))
    torch.testing.assert_close(stats.std, class_std(probs))
    torch.testing.assert_close(stats.predictive_entropy, predictive_entropy(probs))
    torch.testing.assert_close(stats.expected_entropy, expected_entropy(probs))
    torch.testing.assert_close(stats.mutual_information, mutual_information(probs))
    torch.testing.assert_close(stats.variation_ratio, variation_ratio(probs))
    assert torch.equal(stats.predicted_class, predicted_class(probs))
    torch.testing.assert_close(stats.confidence, confidence(probs))
    for field in ("mean", "std", "ci_lower", "ci_upper"):
        assert getattr(stats, field).shape == (5, 4)
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.mean = stats.std  # type: ignore[misc]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("alpha", [0.01, 0.3, 5.0])
def test_mutual_information_is_never_negative(dtype: torch.dtype, alpha: float) -> None:
    rng = np.random.default_rng(4)
    probs = torch.from_numpy(rng.dirichlet([alpha] * 5, size=(8, 200))).to(dtype)
    # Identical passes sit exactly on the Jensen bound, where rounding could go below zero.
    probs = torch.cat([probs, probs[:1].expand(8, 200, 5)], dim=1)
    mi = mutual_information(probs)
    assert not torch.isnan(mi).any()
    assert bool((mi >= 0).all())
    assert bool((mi <= math.log(5) + 1e-6).all())
    unclamped = predictive_entropy(probs) - expected_entropy(probs)
    eps = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(mi, unclamped.clamp_min(0.0))
    assert bool((unclamped > -eps).all())


def test_variation_ratio_three_passes() -> None:
    probs = _probs(
        [
            [[0.7, 0.2, 0.1], [0.6, 0.3, 0.1], [0.1, 0.1, 0.8]],
            [[0.1, 0.8, 0.1], [0.2, 0.5, 0.3], [0.1, 0.1, 0.8]],
            [[0.5, 0.3, 0.2], [0.1, 0.1, 0.8], [0.1, 0.1, 0.8]],
        ]
    )
    # Row votes: (0, 1, 0) -> 1 - 2/3; (0, 1, 2) -> 1 - 1/3; (2, 2, 2) -> 0.
    assert variation_ratio(probs).tolist() == pytest.approx([1 / 3, 2 / 3, 0.0], abs=1e-15)


def test_class_std_is_population_form() -> None:
    single = _probs([[[0.3, 0.7], [0.9, 0.1]]])
    assert class_std(single).tolist() == [[0.0, 0.0], [0.0, 0.0]]
    rng = np.random.default_rng(5)
    data = rng.dirichlet([1.0] * 3, size=(7, 4))
    np.testing.assert_allclose(
        class_std(torch.from_numpy(data)).numpy(), data.std(axis=0, ddof=0), rtol=0, atol=1e-15
    )


def test_single_pass_statistics() -> None:
    probs = _probs([[[0.25, 0.75]]])
    stats = classification_stats(probs, ci_level=0.95)
    assert stats.std.tolist() == [[0.0, 0.0]]
    assert torch.equal(stats.ci_lower, probs[0])
    assert torch.equal(stats.ci_upper, probs[0])
    assert stats.mutual_information.tolist() == [0.0]
    assert stats.variation_ratio.tolist() == [0.0]
    assert stats.predictive_entropy.tolist() == pytest.approx([_h(0.25, 0.75)], abs=1e-15)


@pytest.mark.parametrize("shape", [(2, 3), (0, 2, 3), (2, 3, 4, 5)])
def test_classification_stats_rejects_wrong_shapes(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=r"\(N, B, C\)"):
        classification_stats(torch.zeros(shape), ci_level=0.9)
