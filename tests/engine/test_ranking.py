"""Ranking: scores equal predict's numbers, chunking and merging do not change the picks."""

from __future__ import annotations

import pytest
import torch
from sklearn.datasets import load_digits

from app.dataplane.policy import local_request
from app.engine.acquisition import bald, classification_score
from app.engine.batchbald import _exact_joint, batchbald, joint_entropy_with
from app.engine.predictor import Passes, PredictionRequest
from app.engine.ranking import ScoredRows, TopK, rank, score_passes
from app.engine.stats import ClassificationStats, RegressionStats
from app.engine.stats.classification import entropy
from app.errors import InvalidInputError
from app.registry.loading import load_model_folder
from app.registry.served import ServedModel
from tests.engine.error_bounds import (
    bald_bound,
    batchbald_score_bound,
    margin_bound,
    relative_perturbation,
)
from tests.engine.ranking_support import scored_rows
from tests.support import BUNDLED_MODELS

DIGITS = torch.from_numpy(load_digits().images[:60]).float().unsqueeze(1)  # (60, 1, 8, 8)


@pytest.fixture(scope="module")
def cnn() -> ServedModel:
    return load_model_folder(BUNDLED_MODELS / "digits-cnn")


def _chunked(model: ServedModel, strategy: str, chunk: int, k: int = 5) -> TopK:
    top = TopK.for_strategy(strategy, k, candidates=12)  # type: ignore[arg-type]
    for start in range(0, len(DIGITS), chunk):
        rows = scored_rows(model, DIGITS[start : start + chunk], strategy, 30, 11)  # type: ignore[arg-type]
        top.add(start, rows)
    return top


def _pool_probs(model: ServedModel, chunk: int) -> torch.Tensor:
    """The pool's passes (N, 60, C), scored ``chunk`` rows per request."""
    parts = [
        scored_rows(model, DIGITS[start : start + chunk], "batchbald", 30, 11).probs
        for start in range(0, len(DIGITS), chunk)
    ]
    return torch.cat([part for part in parts if part is not None], dim=1)


def test_bald_scores_are_predicts_mutual_information(cnn: ServedModel) -> None:
    ranking = rank(cnn.predictor, local_request(cnn, DIGITS, n_samples=30, seed=11), "bald", 60)
    request = PredictionRequest(inputs=DIGITS, n_samples=30, ci_level=0.9, seed=11)
    stats = cnn.predictor.predict(request).stats
    assert isinstance(stats, ClassificationStats)
    mi = stats.mutual_information
    assert ranking.scores == [float(mi[i]) for i in ranking.selected]
    assert ranking.selected == torch.argsort(mi, descending=True, stable=True).tolist()


@pytest.mark.parametrize("strategy", ["bald", "margin", "batchbald"])
def test_same_picks_however_the_pool_is_chunked_given_the_same_passes(
    cnn: ServedModel, strategy: str
) -> None:
    """Bit-identical: the pool's passes are computed once and offered in chunks of 7, 25 and
    60 rows, so only TopK's bookkeeping (candidates, their order, merging) is under test; the
    BatchBALD picks include the sampled-joint regime (k = 5 > 3 = the exact limit at C = 10)."""
    probs = _pool_probs(cnn, 60)
    scores = classification_score(strategy, probs)  # type: ignore[arg-type]
    picks = []
    for chunk in (60, 7, 25):
        top = TopK.for_strategy(strategy, 5, candidates=12)  # type: ignore[arg-type]
        for start in range(0, len(DIGITS), chunk):
            part = probs[:, start : start + chunk]
            top.add(start, ScoredRows(scores[start : start + chunk], part))
        positions, gains = top.picks(seed=11)
        picks.append(([int(top.indices[i]) for i in positions], gains))
    assert picks[1] == picks[0] and picks[2] == picks[0]


@pytest.mark.parametrize("chunk", [7, 25])
def test_bald_and_margin_scores_move_only_within_their_error_bound(
    cnn: ServedModel, chunk: int
) -> None:
    """Scores of a pool scored in chunks against the pool scored whole: the rows' float32
    passes differ by the prefix's batch size (BLAS blocking and thread split: up to ~1e-5
    relative, CPU-dependent), so each score may move by the bound of tests/engine/error_bounds
    derived from the measured perturbation and the score's float32 rounding, and no further;
    the top 5 are the same rows wherever their score gaps exceed twice that bound."""
    whole, chunked = _pool_probs(cnn, 60), _pool_probs(cnn, chunk)
    rel = relative_perturbation(chunked, whole)
    for strategy, bound in (("bald", bald_bound(whole, rel)), ("margin", margin_bound(whole, rel))):
        reference = classification_score(strategy, whole).double()  # type: ignore[arg-type]
        moved = classification_score(strategy, chunked).double()  # type: ignore[arg-type]
        assert bool(((moved - reference).abs() <= bound).all()), strategy
        order = torch.argsort(reference, descending=True, stable=True)
        gaps = reference[order[:5]] - reference[order[1:6]]
        assert bool((gaps > 2 * torch.maximum(bound[order[:5]], bound[order[1:6]])).all())
        assert _chunked(cnn, strategy, chunk).indices.tolist() == order[:5].tolist()


@pytest.mark.parametrize("chunk", [7, 25])
def test_batchbald_gains_move_only_within_their_error_bound(cnn: ServedModel, chunk: int) -> None:
    """BatchBALD on the 12 BALD candidates of a pool scored in chunks vs whole: the same 4 picks
    (every score gap of the greedy steps exceeds twice its bound) and each gain within the
    derived bound of the two scores it subtracts. k = 4 keeps every score in the exact
    enumeration (C^|S| <= 1000); beyond it the joint's configurations are drawn from the
    probabilities, a draw is a discontinuous function of them, and no such bound exists
    (the bit-identical test above covers that regime)."""
    whole, chunked = _pool_probs(cnn, 60), _pool_probs(cnn, chunk)
    rel_all = relative_perturbation(chunked, whole)
    order = torch.argsort(bald(whole), descending=True, stable=True)
    candidates = order[:12]
    # The same 12 candidates: BALD's 12th and 13th are further apart than twice their bound.
    bounds = bald_bound(whole, rel_all)
    assert float(bald(whole)[order[11]] - bald(whole)[order[12]]) > 2 * float(bounds.max())
    chunked_candidates = torch.argsort(bald(chunked), descending=True, stable=True)[:12]
    assert sorted(chunked_candidates.tolist()) == sorted(candidates.tolist())
    probs, rel = whole[:, candidates].double(), rel_all[:, candidates]
    reference, moved = batchbald(probs, 4, seed=11), batchbald(chunked[:, candidates], 4, seed=11)
    assert moved.indices == reference.indices
    previous = 0.0
    for step, x in enumerate(reference.indices):
        bound = batchbald_score_bound(probs, rel, reference.indices[:step], x)
        assert abs(moved.gains[step] - reference.gains[step]) <= bound + previous
        others = [i for i in range(12) if i not in reference.indices[:step] and i != x]
        runner_up = max(others, key=lambda i: _score(probs, reference.indices[:step], i))
        gap = _score(probs, reference.indices[:step], x) - _score(
            probs, reference.indices[:step], runner_up
        )
        assert gap > bound + batchbald_score_bound(probs, rel, reference.indices[:step], runner_up)
        previous = bound


def _score(probs: torch.Tensor, selected: list[int], x: int) -> float:
    """BatchBALD's exact score of row x after ``selected``: H(y_S, y_x) - Σ E_w H(y_i | w)."""
    joint = _exact_joint(probs[:, selected])
    weights = torch.ones(joint.shape[1], dtype=probs.dtype)
    joint_entropy = joint_entropy_with(joint, weights, probs[:, [x]])[0]
    return float(joint_entropy - entropy(probs[:, [*selected, x]]).mean(dim=0).sum())


def test_merging_parts_in_any_order_gives_the_whole(cnn: ServedModel) -> None:
    parts = []
    for start in (40, 0, 20):
        part = TopK.for_strategy("entropy", 6)
        part.add(start, scored_rows(cnn, DIGITS[start : start + 20], "entropy", 30, 3))
        parts.append(part)
    merged = TopK.for_strategy("entropy", 6)
    for part in parts:
        merged.merge(part)
    # The whole pool's scores from the same three requests, so only merging is under test.
    scores = torch.cat(
        [scored_rows(cnn, DIGITS[s : s + 20], "entropy", 30, 3).scores for s in (0, 20, 40)]
    )
    best = torch.argsort(scores, descending=True, stable=True)[:6]
    assert merged.indices.tolist() == best.tolist()


def test_ties_keep_the_lower_pool_index_first() -> None:
    top = TopK.for_strategy("bald", 3)
    top.offer(torch.tensor([5, 9]), torch.tensor([0.5, 0.5], dtype=torch.float64))
    top.offer(torch.tensor([2, 7]), torch.tensor([0.5, 0.1], dtype=torch.float64))
    assert top.indices.tolist() == [2, 5, 9]


def test_batchbald_chooses_among_the_top_bald_candidates(cnn: ServedModel) -> None:
    ranking = rank(
        cnn.predictor,
        local_request(cnn, DIGITS, n_samples=30, seed=5),
        "batchbald",
        4,
        candidates=10,
    )
    rows = scored_rows(cnn, DIGITS, "batchbald", 30, 5)
    assert rows.probs is not None
    candidates = torch.argsort(bald(rows.probs), descending=True, stable=True)[:10]
    chosen = batchbald(rows.probs[:, candidates].double(), 4, seed=5)
    assert ranking.selected == [int(candidates[i]) for i in chosen.indices]
    assert ranking.scores == chosen.gains


def test_std_ranks_regression_rows_by_predicts_std() -> None:
    model = load_model_folder(BUNDLED_MODELS / "diabetes-mlp")
    inputs = torch.linspace(-0.2, 0.2, 30 * 10).reshape(30, 10)
    ranking = rank(model.predictor, local_request(model, inputs, n_samples=40, seed=2), "std", 3)
    stats = model.predictor.predict(
        PredictionRequest(inputs=inputs, n_samples=40, ci_level=0.9, seed=2)
    ).stats
    assert isinstance(stats, RegressionStats)
    expected = stats.std.max(dim=-1).values
    assert ranking.selected == torch.argsort(expected, descending=True)[:3].tolist()
    # Two float32 formulas of the same std (variance of ~200-valued passes): rounding only.
    assert ranking.scores == pytest.approx(expected[ranking.selected].tolist(), rel=1e-5)


def test_classification_strategy_refused_for_regression() -> None:
    model = load_model_folder(BUNDLED_MODELS / "diabetes-mlp")
    with pytest.raises(ValueError, match="use 'std'"):
        request = local_request(model, torch.zeros(2, 10), n_samples=5, seed=0)
        rank(model.predictor, request, "bald", 1)


def test_k_must_be_positive() -> None:
    with pytest.raises(ValueError, match="k must be at least 1"):
        TopK.for_strategy("bald", 0)


def test_rows_whose_passes_or_scores_are_not_finite_are_refused_by_position() -> None:
    probs = torch.full((4, 3, 2), 0.5)
    probs[2, 1] = float("nan")
    with pytest.raises(InvalidInputError, match=r"^inputs\[11\]: the model's output"):
        score_passes(Passes(probs, None, 0), "classification", "bald", offset=10)
    # float32 passes of +-3e38 are finite, their variance is not (as float32)
    means = torch.tensor([[[0.0], [3e38]], [[0.0], [-3e38]]])
    with pytest.raises(InvalidInputError, match=r"^inputs\[1\]"):
        score_passes(Passes(means, 1.0, 0), "regression", "std")
    finite = score_passes(Passes(torch.full((4, 3, 2), 0.5), None, 0), "classification", "bald")
    assert finite.scores.tolist() == [0.0, 0.0, 0.0]
