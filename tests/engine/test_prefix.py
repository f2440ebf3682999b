from __future__ import annotations

import torch
from torch import Tensor, nn

from app.engine.dropout import find_dropout_layers
from app.engine.prefix import fx_split
from app.engine.sampler import MCSampler


class _Residual(nn.Module):
    """A skip connection crosses the split: out = head(drop(body(x))) + skip(body(x))."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU())
        self.drop = nn.Dropout(0.4)
        self.head = nn.Linear(8, 3)
        self.skip = nn.Linear(8, 3)

    def forward(self, x: Tensor) -> Tensor:
        h = self.body(x)
        out: Tensor = self.head(self.drop(h)) + self.skip(h) + x[:, :3]
        return out


class _Flattening(nn.Module):
    """Uses the batch size after the dropout: x.view(x.size(0), -1)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        self.drop = nn.Dropout2d(0.3)
        self.out = nn.Linear(2 * 4 * 4, 2)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv(x)
        h = self.drop(h)
        out: Tensor = self.out(h.view(h.size(0), -1))
        return out


class _Dynamic(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(2, 2)
        self.drop = nn.Dropout(0.5)

    def forward(self, x: Tensor) -> Tensor:
        if x.sum() > 0:  # data-dependent control flow: not traceable
            x = -x
        out: Tensor = self.drop(self.lin(x))
        return out


class _Identity:
    """Eval-mode dropout for calling a split's suffix directly."""

    @staticmethod
    def apply(index: int, x: Tensor) -> Tensor:
        return x


def _seeded(module: nn.Module) -> nn.Module:
    torch.manual_seed(0)
    for parameter in module.parameters():
        nn.init.normal_(parameter)
    return module.eval()


def _split_and_plain(model: nn.Module, x: Tensor, n: int, seed: int) -> tuple[Tensor, Tensor]:
    layers = find_dropout_layers(model)
    split = fx_split(model, layers, x)
    assert split.prefix_fraction > 0, split.reason
    with_prefix = MCSampler(model, layers, max_rows=4096, split=split)
    a = with_prefix.sample(x, n, seed)
    with_prefix.close()
    plain = MCSampler(model, layers, max_rows=4096)
    b = plain.sample(x, n, seed)
    plain.close()
    return a, b


def test_residual_model_splits_and_matches_plain_folding() -> None:
    model = _seeded(_Residual())
    x = torch.randn(5, 4)
    split = fx_split(model, find_dropout_layers(model), x)
    # body(x) feeds the dropout; skip(body(x)) and x[:, :3] are added after it
    assert "3 value(s) cross" in split.reason
    assert 0.3 < split.prefix_fraction < 1.0
    with torch.inference_mode():
        torch.testing.assert_close(split.suffix(_Identity(), *split.prefix(x)), model(x))
    with_prefix, plain = _split_and_plain(model, x, 64, seed=3)
    assert (with_prefix.var(0) > 0).all()
    # the prefix runs on B rows instead of N*B, so BLAS may round differently
    torch.testing.assert_close(with_prefix, plain, rtol=1e-5, atol=1e-5)


def test_batch_size_used_after_the_dropout_is_recomputed_in_the_suffix() -> None:
    model = _seeded(_Flattening())
    x = torch.randn(3, 1, 4, 4)
    with_prefix, plain = _split_and_plain(model, x, 32, seed=1)
    assert with_prefix.shape == (32, 3, 2)
    torch.testing.assert_close(with_prefix, plain, rtol=1e-5, atol=1e-5)


def test_untraceable_model_falls_back_with_the_reason() -> None:
    model = _seeded(_Dynamic())
    split = fx_split(model, find_dropout_layers(model), torch.randn(2, 2))
    assert split.prefix_fraction == 0.0
    assert split.reason.startswith("no prefix split: torch.fx could not trace the model")
    assert split.prefix(torch.ones(2, 2))[0].shape == (2, 2)


def test_dropout_first_gives_an_empty_prefix() -> None:
    model = _seeded(nn.Sequential(nn.Dropout(0.5), nn.Linear(3, 2)))
    split = fx_split(model, find_dropout_layers(model), torch.randn(2, 3))
    assert split.prefix_fraction == 0.0
    x = torch.randn(2, 3)
    (value,) = split.prefix(x)
    assert torch.equal(value, x)
