"""The stochasticity audit finds every source of randomness mcdrop does not sample, names the
module responsible, and leaves the model (modes, buffers, global generator) as it was."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from app.engine.audit import (
    RANDOM_IN_EVAL,
    RANDOM_IN_TRAINING,
    Z,
    reference_passes,
    stochastic_modules,
    variance_gap,
)


class _Locked(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        return x * x.new_empty(x.size(0), 1, x.size(2)).bernoulli_(0.5) * 2


class _DropConnect(nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, F.dropout(self.weight, 0.3, self.training), self.bias)


class _Noise(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.randn_like(x) if self.training else x


class _Depth(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.block = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and bool(torch.rand(()) < 0.5):
            return x
        out: torch.Tensor = x + self.block(x)
        return out


class _AlwaysOn(nn.Module):
    """Functional dropout with training=True in a loop torch.fx cannot trace."""

    def __init__(self) -> None:
        super().__init__()
        self.cell = nn.GRUCell(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.new_zeros(x.size(0), 4)
        mask = F.dropout(torch.ones_like(h), 0.5, training=True)
        for t in range(x.size(1)):
            h = self.cell(x[:, t], h) * mask
        return h


def _net(extra: nn.Module) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(4, 4), nn.BatchNorm1d(3), nn.Dropout(0.2), extra, nn.Linear(4, 2)
    ).eval()


PROBE = torch.rand(2, 3, 4, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize(
    ("extra", "kind"),
    [
        (_Locked(), "_Locked"),
        (_DropConnect(4, 4), "_DropConnect"),
        (_Noise(), "_Noise"),
        (_Depth(), "_Depth"),
        (nn.RReLU(), "RReLU"),
    ],
)
def test_each_custom_source_is_found_by_name(extra: nn.Module, kind: str) -> None:
    net = _net(extra)
    findings = stochastic_modules(net, PROBE, known={"2"})
    assert [(f.name, f.kind, f.reason) for f in findings] == [("3", kind, RANDOM_IN_TRAINING)]


def test_dropout_mcdrop_samples_and_deterministic_modules_are_not_findings() -> None:
    net = _net(nn.ReLU())
    assert stochastic_modules(net, PROBE, known={"2"}) == []
    # a dropout module is never a finding, known or not: mcdrop finds those itself
    assert stochastic_modules(net, PROBE) == []


def test_multihead_attention_dropout_is_found() -> None:
    class Attend(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attention = nn.MultiheadAttention(4, 2, dropout=0.5, batch_first=True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = self.attention(x, x, x, need_weights=False)[0]
            return out

    findings = stochastic_modules(Attend().eval(), PROBE)
    assert [(f.name, f.kind) for f in findings] == [("attention", "MultiheadAttention")]


def test_random_numbers_in_eval_are_traced_to_the_module_drawing_them() -> None:
    net = nn.Sequential(nn.Linear(4, 4), _AlwaysOn(), nn.Linear(4, 2)).eval()
    findings = stochastic_modules(net, PROBE)
    assert [(f.name, f.kind, f.reason, f.calls_dropout) for f in findings] == [
        ("1", "_AlwaysOn", RANDOM_IN_EVAL, True)
    ]


def test_the_audit_leaves_modes_buffers_and_the_global_generator_as_they_were() -> None:
    net = _net(_Noise())
    batch_norm = net.get_submodule("1")
    assert isinstance(batch_norm, nn.BatchNorm1d) and batch_norm.running_mean is not None
    before = batch_norm.running_mean.clone()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    stochastic_modules(net, PROBE)
    reference = reference_passes(net, PROBE, 8)
    assert torch.equal(torch.rand(3), expected)
    assert not any(module.training for module in net.modules())
    assert torch.equal(batch_norm.running_mean, before)
    assert reference.shape == (8, 2, 3, 2)
    assert not torch.equal(reference[0], reference[1])


def test_reference_keeps_frozen_modules_and_normalization_layers_in_eval() -> None:
    net = _net(_Noise())
    # only the frozen noise and dropout were random: with both frozen every pass is the same
    passes = reference_passes(net, PROBE, 4, frozen={"2", "3"})
    assert torch.equal(passes[0], passes[3])


def test_variance_gap_closed_forms() -> None:
    # passes ±1 (variance 1) against passes ±0 (variance 0): a gap of exactly 1, infinitely sure
    reference = torch.tensor([1.0, -1.0] * 8).view(16, 1, 1)
    gap = variance_gap(reference, torch.zeros(16, 1, 1))
    assert (gap.reference, gap.sampled) == (1.0, 0.0) and gap.excess
    same = variance_gap(reference, reference.clone())
    assert same.z == 0.0 and not same.excess
    # two independent draws of the same distribution stay within Z standard errors
    generator = torch.Generator().manual_seed(0)
    a, b = (torch.randn(400, 3, 5, generator=generator) for _ in range(2))
    assert abs(variance_gap(a, b).z) < Z
    # and a variance twice as large is seen
    assert variance_gap(a * 2**0.5, b).excess
