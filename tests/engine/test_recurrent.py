"""Stacked RNNs run one layer at a time: the same numbers as torch's fused stack in eval mode,
torch's inter-layer dropout as dropout modules, and a deterministic prefix through layer 0."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from app.engine.dropout import find_dropout_layers
from app.engine.prefix import fx_split
from app.engine.recurrent import RecurrentDropout, StackedRNN, unroll_recurrent_dropout

Kind = type[nn.LSTM | nn.GRU | nn.RNN]
KINDS: list[Kind] = [nn.LSTM, nn.GRU, nn.RNN]


def _rnn(kind: Kind, batch_first: bool, bidirectional: bool) -> nn.RNNBase:
    torch.manual_seed(0)
    return kind(
        3, 5, num_layers=3, dropout=0.5, batch_first=batch_first, bidirectional=bidirectional
    ).eval()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("bidirectional", [True, False])
def test_stacked_layers_compute_torchs_outputs_and_final_states_in_eval(
    kind: Kind, batch_first: bool, bidirectional: bool
) -> None:
    rnn = _rnn(kind, batch_first, bidirectional)
    stacked = StackedRNN(rnn)
    x = torch.randn(4, 7, 3) if batch_first else torch.randn(7, 4, 3)
    layers = 3 * (2 if bidirectional else 1)
    state = torch.randn(layers, 4, 5)
    hx = (state, torch.randn(layers, 4, 5)) if kind is nn.LSTM else state
    with torch.no_grad():
        for initial in (None, hx):
            ours = torch.utils._pytree.tree_leaves(stacked(x, initial))
            theirs = torch.utils._pytree.tree_leaves(rnn(x, initial))
            assert len(ours) == len(theirs)
            for a, b in zip(ours, theirs, strict=True):
                assert a.shape == b.shape and torch.equal(a, b)


def test_parameters_are_shared_not_copied() -> None:
    rnn = _rnn(nn.LSTM, True, True)
    stacked = StackedRNN(rnn)
    layer = stacked.layers[2]
    assert layer.weight_hh_l0_reverse is rnn.weight_hh_l2_reverse
    assert sum(p.numel() for p in stacked.parameters()) == sum(p.numel() for p in rnn.parameters())


def test_training_mode_drops_between_layers_only_as_torch_does() -> None:
    """In training mode the stack's dropout modules are torch's dropout: layer 0's output
    masked per element and time step, none after the last layer (a 1-layer stack has none)."""
    rnn = _rnn(nn.GRU, True, False)
    stacked = StackedRNN(rnn)
    assert [type(m) for m in stacked.dropout] == [RecurrentDropout, RecurrentDropout]
    assert [m.p for m in stacked.dropout] == [0.5, 0.5]
    stacked.train()
    x = torch.randn(2000, 6, 3)
    with torch.no_grad():
        ours = stacked(x)[0]
        theirs = rnn.train()(x)[0]
    # the same distribution: mean and spread per unit agree to MC error (5 standard errors)
    for statistic in (torch.mean, torch.std):
        a, b = statistic(ours, 0), statistic(theirs, 0)
        se = (ours.std(0) ** 2 / x.shape[0] * 2).sqrt()
        assert ((a - b).abs() < 5 * se + 1e-6).float().mean() > 0.99


def test_only_stacked_rnns_with_dropout_are_unrolled() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.LSTM(3, 4, num_layers=2, dropout=0.2, batch_first=True)
            self.b = nn.LSTM(4, 4, num_layers=2, batch_first=True)
            self.c = nn.GRU(4, 4, dropout=0.0)

    net = Net()
    assert unroll_recurrent_dropout(net) == ["a"]
    assert isinstance(net.a, StackedRNN) and isinstance(net.b, nn.LSTM)
    assert [layer.name for layer in find_dropout_layers(net)] == ["a.dropout.0"]


@pytest.mark.parametrize("batch_first", [True, False])
def test_prefix_split_runs_the_first_layer_once_per_row(batch_first: bool) -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = nn.LSTM(3, 5, num_layers=2, dropout=0.5, batch_first=batch_first)
            self.head = nn.Linear(5, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            _, (h, _) = self.rnn(x if batch_first else x.transpose(0, 1))
            out: torch.Tensor = self.head(h[-1])
            return out

    torch.manual_seed(0)
    net = Net().eval()
    reference = copy.deepcopy(net)
    unroll_recurrent_dropout(net)
    x = torch.randn(3, 7, 3)
    split = fx_split(net, find_dropout_layers(net), x)
    assert split.applies_dropout, split.reason
    assert "from the first dropout: rnn.dropout.0" in split.reason
    assert split.prefix_fraction > 0.3  # layer 0 of two (plus the head) runs once per row
    with torch.no_grad():
        assert torch.equal(net(x), reference(x))


@pytest.mark.parametrize("bidirectional", [True, False])
def test_an_lstm_with_projections_is_stacked_exactly(bidirectional: bool) -> None:
    torch.manual_seed(0)
    rnn = nn.LSTM(
        3, 6, num_layers=3, dropout=0.5, batch_first=True, bidirectional=bidirectional, proj_size=4
    ).eval()
    directions = 2 if bidirectional else 1
    x = torch.randn(2, 5, 3)
    hx = (torch.randn(3 * directions, 2, 4), torch.randn(3 * directions, 2, 6))
    with torch.no_grad():
        for initial in (None, hx):
            ours = torch.utils._pytree.tree_leaves(StackedRNN(rnn)(x, initial))
            theirs = torch.utils._pytree.tree_leaves(rnn(x, initial))
            assert all(torch.equal(a, b) for a, b in zip(ours, theirs, strict=True))
