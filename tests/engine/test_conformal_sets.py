"""LAC, APS and RAPS set scores against hand-computed answers, Mondrian thresholds, coverage."""

from __future__ import annotations

import math

import pytest
import torch

from app.engine.conformal import (
    ConformalRule,
    apply_rule,
    conformal_quantile,
    mondrian_quantiles,
)
from app.engine.conformal_sets import (
    SetParameters,
    calibration_scores,
    class_scores,
    prediction_sets,
    ranks,
)

PROBS = torch.tensor([[0.2, 0.5, 0.3], [0.7, 0.1, 0.2]], dtype=torch.float64)


def _generator() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def test_ranks_and_mass_above() -> None:
    above, rank = ranks(PROBS)
    expected = torch.tensor([[0.8, 0.0, 0.5], [0.0, 0.9, 0.7]], dtype=torch.float64)
    assert torch.allclose(above, expected)
    assert rank.tolist() == [[3.0, 1.0, 2.0], [1.0, 3.0, 2.0]]


def test_lac_scores_and_sets_by_hand() -> None:
    lac = SetParameters("lac")
    labels = torch.tensor([2, 0])
    assert calibration_scores(PROBS, labels, lac, _generator()).tolist() == pytest.approx(
        [0.7, 0.3]
    )
    # q = 0.6: classes with p >= 0.4
    sets = prediction_sets(PROBS, torch.tensor(0.6), lac, _generator())
    assert sets.tolist() == [[False, True, False], [True, False, False]]
    # q = 0.45: p >= 0.55: the first row's set is empty
    sets = prediction_sets(PROBS, torch.tensor(0.45), lac, _generator())
    assert sets.tolist() == [[False, False, False], [True, False, False]]


def test_raps_penalises_ranks_beyond_k_reg() -> None:
    raps = SetParameters("raps", penalty=0.1, k_reg=1)
    # s(x, c) = above + p + 0.1 * max(0, rank - 1)
    scores = class_scores(PROBS, raps, torch.ones(2, dtype=torch.float64))
    expected = [[0.8 + 0.2 + 0.2, 0.5, 0.5 + 0.3 + 0.1], [0.7, 0.9 + 0.1 + 0.2, 0.7 + 0.2 + 0.1]]
    assert torch.allclose(scores, torch.tensor(expected, dtype=torch.float64))
    # set test: above + penalty < q (u = 0), top always: q = 0.65 -> row 0 {1, 2}, row 1 {0}
    sets = prediction_sets(PROBS, torch.tensor(0.65), raps, _generator())
    assert sets.tolist() == [[False, True, True], [True, False, False]]
    # APS is RAPS without the penalty: q = 0.65 also takes class 2 of row 1? above 0.7: no
    aps = prediction_sets(PROBS, torch.tensor(0.65), SetParameters("aps"), _generator())
    assert aps.tolist() == [[False, True, True], [True, False, False]]


def test_randomized_scores_use_one_uniform_per_row() -> None:
    raps = SetParameters("aps", randomized=True)
    u = torch.rand(2, generator=_generator(), dtype=torch.float64)
    labels = torch.tensor([1, 2])
    scores = calibration_scores(PROBS, labels, raps, _generator())
    assert scores.tolist() == pytest.approx([float(u[0]) * 0.5, 0.7 + float(u[1]) * 0.2])


def test_confident_model_gets_singletons_with_lac_not_with_aps() -> None:
    """The failure of the issue: top probabilities within 1e-2 .. 1e-20 of 1 give APS scores
    ~1, so q = 1.0 and most sets hold both classes; LAC's q ~ 0 gives at most one class."""
    top = 1.0 - torch.logspace(-2, -20, 50, dtype=torch.float64)
    probs = torch.stack([top, 1.0 - top], dim=1)
    labels = torch.zeros(50, dtype=torch.long)
    sizes = {}
    for score in ("aps", "lac"):
        parameters = SetParameters(score)
        q = conformal_quantile(calibration_scores(probs, labels, parameters, _generator()), 0.9)
        sets = prediction_sets(probs, torch.tensor(q), parameters, _generator())
        sizes[score] = float(sets.double().sum(1).mean())
        assert float(sets[:, 0].double().mean()) >= 0.9  # coverage of the true class
    assert sizes["aps"] > 1.5 and sizes["lac"] <= 1.0


def test_finite_sample_rank_is_ceil_n_plus_one_level() -> None:
    # n = 19, level 0.9: rank ceil(20 * 0.9) = 18 -> q = 18th smallest of 1..19 = 18, not 17.1
    scores = torch.arange(1.0, 20.0)
    assert conformal_quantile(scores, 0.9) == 18.0
    assert conformal_quantile(torch.arange(1.0, 10.0), 0.95) == math.inf  # ceil(9.5) = 10 > 9


def test_mondrian_takes_each_class_quantile() -> None:
    scores = torch.tensor([0.1, 0.2, 0.3, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.35])
    labels = torch.tensor([0, 0, 0, 1, 1, 1, 1, 1, 1, 1])
    # class 0: n = 3, level 0.5 -> rank ceil(4 * 0.5) = 2 -> 0.2; class 1: n = 7, ceil(4) = 4 ->
    # sorted 0.35 0.4 0.5 0.6 ... -> 0.6; class 2 has no rows -> inf (always in the set)
    quantiles = mondrian_quantiles(scores, labels, 3, 0.5)
    assert quantiles.tolist() == [pytest.approx(0.2), pytest.approx(0.6), math.inf]


@pytest.mark.parametrize(
    ("parameters", "mondrian"),
    [
        (SetParameters("lac"), False),
        (SetParameters("aps", randomized=True), False),
        (SetParameters("raps", penalty=0.05, k_reg=1), False),
        (SetParameters("lac"), True),
    ],
)
def test_coverage_on_exchangeable_synthetic_data(parameters: SetParameters, mondrian: bool) -> None:
    """Dirichlet 'model' probabilities, labels drawn from them: coverage >= level on average
    over splits (and per class with Mondrian); LAC and randomised sets close to it."""
    torch.manual_seed(1)  # the Dirichlet draws use the global generator
    generator = torch.Generator().manual_seed(1)
    level, classes, rows = 0.9, 4, 400
    coverages, per_class = [], []
    for _ in range(30):
        alpha = torch.full((2 * rows, classes), 0.5)
        probs = torch.distributions.Dirichlet(alpha).sample().double()
        labels = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        cal, test = slice(0, rows), slice(rows, 2 * rows)
        scores = calibration_scores(probs[cal], labels[cal], parameters, generator)
        if mondrian:
            q = mondrian_quantiles(scores, labels[cal], classes, level)
        else:
            q = torch.tensor(conformal_quantile(scores, level))
        sets = prediction_sets(probs[test], q, parameters, generator)
        covered = sets.gather(1, labels[test].unsqueeze(1)).squeeze(1).double()
        coverages.append(float(covered.mean()))
        per_class.append([float(covered[labels[test] == c].mean()) for c in range(classes)])
    mean = sum(coverages) / len(coverages)
    assert mean >= level - 0.01
    if parameters.randomized or parameters.score == "lac":  # exact, the others over-cover
        assert mean <= level + 0.03
    if mondrian:
        for c in range(classes):
            assert sum(row[c] for row in per_class) / len(per_class) >= level - 0.02


def test_apply_rule_uses_class_quantiles_and_seed() -> None:
    rule = ConformalRule("lac", 0.9, 0.5, class_quantiles=(0.85, 0.0, 0.0))
    sets = apply_rule(rule, PROBS, None).sets
    assert sets is not None
    # class 0 in when 1 - p <= 0.85 (both rows); classes 1, 2 only when p = 1
    assert sets.tolist() == [[True, False, False], [True, False, False]]
    randomized = ConformalRule("aps", 0.9, 0.6, randomized=True)
    first = apply_rule(randomized, PROBS, None, seed=3).sets
    again = apply_rule(randomized, PROBS, None, seed=3).sets
    assert first is not None and again is not None and torch.equal(first, again)
