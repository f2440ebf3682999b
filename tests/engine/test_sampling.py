"""Every sampler keeps the one sampler contract (tests/engine/sampler_contract.py)."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from app.engine.dropout import find_dropout_layers
from app.engine.prefix import fx_split
from app.engine.sampler import MCSampler
from app.engine.sampling import SampleJob, Sampler
from app.engine.scripted import ScriptedSampler
from tests.engine.sampler_contract import check_sampler_contract


class _ConvHead(nn.Module):
    """Conv -> Linear -> Dropout -> Linear -> Dropout -> Linear: two dropout layers, so a
    TorchScript run's second layer draws depend on the first layer's draw size."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(2)
        self.conv = nn.Conv1d(1, 4, 3)
        self.hidden = nn.Linear(16, 32)
        self.drop1 = nn.Dropout(0.5)
        self.mid = nn.Linear(32, 32)
        self.drop2 = nn.Dropout(0.3)
        self.out = nn.Linear(32, 3)

    def forward(self, x: Tensor) -> Tensor:
        h = torch.relu(self.conv(x.unsqueeze(1))).flatten(1)
        h = self.drop1(torch.relu(self.hidden(h)))
        out: Tensor = self.out(self.drop2(torch.relu(self.mid(h))))
        return out


def _inputs(rows: int = 5) -> Tensor:
    return torch.randn(rows, 6, generator=torch.Generator().manual_seed(9))


def test_mc_sampler_with_hooks_keeps_the_contract() -> None:
    model = _ConvHead().eval()
    check_sampler_contract(MCSampler(model, find_dropout_layers(model), max_rows=10_000), _inputs())


def test_mc_sampler_with_the_fx_split_keeps_the_contract() -> None:
    model = _ConvHead().eval()
    layers = find_dropout_layers(model)
    split = fx_split(model, layers, _inputs(3))
    assert split.applies_dropout, split.reason
    check_sampler_contract(MCSampler(model, layers, max_rows=100, split=split), _inputs())


@pytest.mark.parametrize("max_rows", [10_000, 100], ids=["one-cell", "cells"])
def test_scripted_sampler_keeps_the_contract(max_rows: int) -> None:
    scripted = torch.jit.script(_ConvHead().eval())
    sampler = ScriptedSampler(scripted, find_dropout_layers(scripted), max_rows=max_rows)
    check_sampler_contract(sampler, _inputs())
    assert not any(layer.module.training for layer in sampler.dropout_layers)


def test_the_contract_check_fails_a_sampler_that_ignores_first_sample() -> None:
    class Restarting(ScriptedSampler):
        def sample_jobs(self, jobs: list[SampleJob]) -> list[Tensor]:  # type: ignore[override]
            return super().sample_jobs([SampleJob(j.inputs, j.n_samples, j.seed) for j in jobs])

    scripted = torch.jit.script(_ConvHead().eval())
    sampler = Restarting(scripted, find_dropout_layers(scripted), max_rows=10_000)
    with pytest.raises(AssertionError, match="continue the run"):
        check_sampler_contract(sampler, _inputs())


def test_sampler_is_the_one_base_class() -> None:
    assert issubclass(MCSampler, Sampler) and issubclass(ScriptedSampler, Sampler)
    with pytest.raises(TypeError):
        Sampler(nn.Dropout(), [], max_rows=1)  # type: ignore[abstract]


@pytest.mark.parametrize(
    ("rows", "max_rows", "cell"),
    [(1, 16384, 1024), (3, 16384, 336), (1000, 16384, 16), (5, 100, 16), (50, 100, 2)],
)
def test_scripted_cells_hold_aligned_passes_within_the_row_limit(
    rows: int, max_rows: int, cell: int
) -> None:
    scripted = torch.jit.script(_ConvHead().eval())
    sampler = ScriptedSampler(scripted, find_dropout_layers(scripted), max_rows=max_rows)
    assert sampler.cell_samples(rows) == cell
