"""Training dropout MLPs: Gal's weight decay, standardisation inside the model, determinism."""

from __future__ import annotations

import io

import pytest
import torch

from app.training.mlp import (
    Hyper,
    TrainConfig,
    build_model,
    feature_statistics,
    fit,
    hyper_grid,
    target_precision,
    validation_split,
    weight_decay,
)
from app.training.progress import ProgressBar

CONFIG = TrainConfig(hidden=(16,), epochs=30, batch_size=16, lr=1e-2)


def _regression_data() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(80, 3, generator=generator) * torch.tensor([1.0, 10.0, 0.1]) + 5.0
    y = (x[:, :1] * 3.0 + 100.0) + torch.randn(80, 1, generator=generator)
    return x, y


def test_weight_decay_is_gals_formula_with_the_keep_probability() -> None:
    # p_keep = 0.9, l = 0.5, N = 100, tau = 2: 0.9 * 0.25 / 400.
    assert weight_decay(0.1, 0.5, 100, 2.0) == pytest.approx(0.9 * 0.25 / 400)
    with pytest.raises(ValueError):
        weight_decay(1.0, 0.5, 100, 2.0)


def test_feature_statistics_give_constant_columns_a_unit_std() -> None:
    x = torch.tensor([[1.0, 5.0, 0.0], [3.0, 5.0, 0.2]])
    mean, std = feature_statistics(x, min_std=0.5)
    assert mean.tolist() == pytest.approx([2.0, 5.0, 0.1])
    assert std.tolist() == pytest.approx([2**0.5, 1.0, 0.5])  # 0.141 floored at 0.5


def test_model_standardises_inputs_and_targets_with_the_training_statistics() -> None:
    x, y = _regression_data()
    model = build_model("regression", x, y, 1, Hyper(0.1, 0.01, 1.0), CONFIG)
    torch.testing.assert_close(model.standardize.mean, x.mean(0))
    assert model.destandardize is not None
    torch.testing.assert_close(model.destandardize.std, y.std(0))
    assert target_precision(model, 2.0) == pytest.approx(2.0 / float(y.std() ** 2))


def test_fit_learns_and_is_deterministic() -> None:
    x, y = _regression_data()
    losses: list[float] = []
    model = fit(
        "regression", x, y, 1, Hyper(0.1, 0.01, 1.0), CONFIG, lambda _, loss: losses.append(loss)
    )
    assert len(losses) == 30 and losses[-1] < 0.2 * losses[0]
    assert not model.training
    again = fit("regression", x, y, 1, Hyper(0.1, 0.01, 1.0), CONFIG)
    for a, b in zip(model.state_dict().values(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    with torch.no_grad():
        error = (model(x) - y).abs().mean()  # raw features in, target units out
    assert float(error) < 3.0


def test_larger_weight_decay_shrinks_the_weights() -> None:
    x, y = _regression_data()
    loose = fit("regression", x, y, 1, Hyper(0.1, 0.01, 1.0), CONFIG)
    tight = fit("regression", x, y, 1, Hyper(0.1, 30.0, 0.01), CONFIG)

    def norm(model: torch.nn.Module) -> float:
        return sum(
            float((m.weight.detach() ** 2).sum())
            for m in model.modules()
            if isinstance(m, torch.nn.Linear)
        )

    assert norm(tight) < 0.5 * norm(loose)


def test_grid_and_split() -> None:
    assert hyper_grid([0.1, 0.2], [1.0], [1.0, 2.0]) == [
        Hyper(0.1, 1.0, 1.0),
        Hyper(0.1, 1.0, 2.0),
        Hyper(0.2, 1.0, 1.0),
        Hyper(0.2, 1.0, 2.0),
    ]
    train, held = validation_split(10, 0.2, seed=0)
    assert len(held) == 2 and sorted(torch.cat([train, held]).tolist()) == list(range(10))


def test_progress_bar_logs_every_tenth_off_a_terminal() -> None:
    stream = io.StringIO()
    bar = ProgressBar(20, "fit", stream=stream, width=10)
    for done in range(1, 21):
        bar.update(done, "loss 1")
    bar.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 11 and lines[-1] == "fit [##########] 20/20 loss 1"  # 0/10 .. 10/10
