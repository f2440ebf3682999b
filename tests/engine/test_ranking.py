"""Ranking: scores equal predict's numbers, chunking and merging do not change the picks."""

from __future__ import annotations

import pytest
import torch
from sklearn.datasets import load_digits

from app.engine.acquisition import bald
from app.engine.batchbald import batchbald
from app.engine.predictor import PredictionRequest
from app.engine.ranking import TopK, rank, score_rows
from app.engine.stats import ClassificationStats, RegressionStats
from app.registry.loading import ServedModel, load_model_folder
from tests.support import BUNDLED_MODELS

DIGITS = torch.from_numpy(load_digits().images[:60]).float().unsqueeze(1)  # (60, 1, 8, 8)


@pytest.fixture(scope="module")
def cnn() -> ServedModel:
    return load_model_folder(BUNDLED_MODELS / "digits-cnn")


def _chunked(model: ServedModel, strategy: str, chunk: int, k: int = 5) -> TopK:
    top = TopK.for_strategy(strategy, k, candidates=12)  # type: ignore[arg-type]
    for start in range(0, len(DIGITS), chunk):
        rows = score_rows(model.predictor, DIGITS[start : start + chunk], strategy, 30, 11)  # type: ignore[arg-type]
        top.add(start, rows)
    return top


def test_bald_scores_are_predicts_mutual_information(cnn: ServedModel) -> None:
    ranking = rank(cnn.predictor, DIGITS, "bald", 60, n_samples=30, seed=11)
    request = PredictionRequest(inputs=DIGITS, n_samples=30, ci_level=0.9, seed=11)
    stats = cnn.predictor.predict(request).stats
    assert isinstance(stats, ClassificationStats)
    mi = stats.mutual_information
    assert ranking.scores == [float(mi[i]) for i in ranking.selected]
    assert ranking.selected == torch.argsort(mi, descending=True, stable=True).tolist()


@pytest.mark.parametrize("strategy", ["bald", "margin", "batchbald"])
def test_same_picks_however_the_pool_is_chunked(cnn: ServedModel, strategy: str) -> None:
    whole = _chunked(cnn, strategy, chunk=60).picks(seed=11)
    for chunk in (7, 25):
        top = _chunked(cnn, strategy, chunk)
        positions, scores = top.picks(seed=11)
        reference = _chunked(cnn, strategy, 60)
        assert [int(top.indices[i]) for i in positions] == [
            int(reference.indices[i]) for i in whole[0]
        ]
        assert scores == pytest.approx(whole[1], rel=1e-5, abs=1e-7)


def test_merging_parts_in_any_order_gives_the_whole(cnn: ServedModel) -> None:
    parts = []
    for start in (40, 0, 20):
        part = TopK.for_strategy("entropy", 6)
        part.add(start, score_rows(cnn.predictor, DIGITS[start : start + 20], "entropy", 30, 3))
        parts.append(part)
    merged = TopK.for_strategy("entropy", 6)
    for part in parts:
        merged.merge(part)
    scores = score_rows(cnn.predictor, DIGITS, "entropy", 30, 3).scores
    best = torch.argsort(scores, descending=True, stable=True)[:6]
    assert merged.indices.tolist() == best.tolist()


def test_ties_keep_the_lower_pool_index_first() -> None:
    top = TopK.for_strategy("bald", 3)
    top.offer(torch.tensor([5, 9]), torch.tensor([0.5, 0.5], dtype=torch.float64))
    top.offer(torch.tensor([2, 7]), torch.tensor([0.5, 0.1], dtype=torch.float64))
    assert top.indices.tolist() == [2, 5, 9]


def test_batchbald_chooses_among_the_top_bald_candidates(cnn: ServedModel) -> None:
    ranking = rank(cnn.predictor, DIGITS, "batchbald", 4, n_samples=30, seed=5, candidates=10)
    rows = score_rows(cnn.predictor, DIGITS, "batchbald", 30, 5)
    assert rows.probs is not None
    candidates = torch.argsort(bald(rows.probs), descending=True, stable=True)[:10]
    chosen = batchbald(rows.probs[:, candidates].double(), 4, seed=5)
    assert ranking.selected == [int(candidates[i]) for i in chosen.indices]
    assert ranking.scores == chosen.gains


def test_std_ranks_regression_rows_by_predicts_std() -> None:
    model = load_model_folder(BUNDLED_MODELS / "diabetes-mlp")
    inputs = torch.linspace(-0.2, 0.2, 30 * 10).reshape(30, 10)
    ranking = rank(model.predictor, inputs, "std", 3, n_samples=40, seed=2)
    stats = model.predictor.predict(
        PredictionRequest(inputs=inputs, n_samples=40, ci_level=0.9, seed=2)
    ).stats
    assert isinstance(stats, RegressionStats)
    expected = stats.std.max(dim=-1).values
    assert ranking.selected == torch.argsort(expected, descending=True)[:3].tolist()
    assert ranking.scores == pytest.approx(expected[ranking.selected].tolist(), rel=1e-6)


def test_classification_strategy_refused_for_regression() -> None:
    model = load_model_folder(BUNDLED_MODELS / "diabetes-mlp")
    with pytest.raises(ValueError, match="use 'std'"):
        rank(model.predictor, torch.zeros(2, 10), "bald", 1, n_samples=5, seed=0)


def test_k_must_be_positive() -> None:
    with pytest.raises(ValueError, match="k must be at least 1"):
        TopK.for_strategy("bald", 0)
