"""Recurrent inter-layer dropout, sampled: a stacked ``nn.LSTM``/``GRU``/``RNN`` run one layer at
a time.

torch applies a multi-layer RNN's ``dropout`` inside its fused kernel, to the output of every
layer but the last and only in training mode, so neither a module switch nor a hook reaches it
while the model stays in eval. :func:`unroll_recurrent_dropout` replaces each such RNN with a
:class:`StackedRNN` that runs the same layers (the same parameter tensors, shared, not copied)
one by one and puts a :class:`RecurrentDropout` module between them. Those are dropout sites like
any other (``rnn.dropout.0`` follows layer 0 of ``rnn``): found, listed, nameable in
``mc_dropout``, sampled with the run's seeded masks, and traced by torch.fx, so everything up to
the first of them (layer 0 included) runs once per row. The semantics are torch's: one Bernoulli
per element and time step of the layer's output (both directions of a bidirectional layer),
scaled by 1 / (1 - p).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

__all__ = ["RecurrentDropout", "StackedRNN", "unroll_recurrent_dropout"]

_STACKABLE = (nn.LSTM, nn.GRU, nn.RNN)


class RecurrentDropout(nn.Dropout):
    """Dropout between two layers of a stacked RNN, on the previous layer's batch-first output
    (B, T, D * H): an independent mask per element and time step (torch's ``dropout``)."""


class StackedRNN(nn.Module):
    """A multi-layer ``nn.LSTM``/``GRU``/``RNN`` as single-layer RNNs sharing its parameters,
    with a :class:`RecurrentDropout` after every layer but the last.

    Same call and results as the original: ``forward(input, hx=None) -> (output, h_n)`` (LSTM:
    ``(output, (h_n, c_n))``), ``batch_first`` as the original's. Internally everything is
    batch-first, so every value passed between layers is a per-row tensor (B, ...), as the
    deterministic-prefix split needs.
    """

    def __init__(self, rnn: nn.RNNBase) -> None:
        super().__init__()
        self.mode = rnn.mode
        self.batch_first = rnn.batch_first
        self.directions = 2 if rnn.bidirectional else 1
        self.layers = nn.ModuleList(_single_layer(rnn, layer) for layer in range(rnn.num_layers))
        self.dropout = nn.ModuleList(
            RecurrentDropout(float(rnn.dropout)) for _ in range(rnn.num_layers - 1)
        )
        self.train(rnn.training)

    def forward(self, input: Tensor, hx: Any = None) -> tuple[Tensor, Any]:
        if isinstance(input, PackedSequence):
            raise ValueError("mcdrop's stacked RNN takes padded (B, T, F) tensors, not packed ones")
        x = input if self.batch_first else input.transpose(0, 1)
        finals: list[Any] = []
        for index, layer in enumerate(self.layers):
            if index > 0:
                x = self.dropout[index - 1](x)
            x, final = layer(x, self._layer_state(hx, index))
            finals.append(_batch_first_state(final, self.mode == "LSTM"))
        output = x if self.batch_first else x.transpose(0, 1)
        return output, self._join_states(finals)

    def _layer_state(self, hx: Any, index: int) -> Any:
        """Layer ``index``'s share of an initial state (L * D, B, H), or None."""
        if hx is None:
            return None
        rows = slice(index * self.directions, (index + 1) * self.directions)
        if self.mode == "LSTM":
            return hx[0][rows], hx[1][rows]
        return hx[rows]

    def _join_states(self, finals: list[Any]) -> Any:
        """The layers' final states, each batch-first (B, D, H), as torch's (L * D, B, H)."""
        if self.mode == "LSTM":
            h = [state[0] for state in finals]
            c = [state[1] for state in finals]
            return _stack(h), _stack(c)
        return _stack(finals)


def _stack(states: list[Tensor]) -> Tensor:
    joined = states[0] if len(states) == 1 else torch.cat(states, dim=1)
    return joined.transpose(0, 1).contiguous()


def _batch_first_state(final: Any, pair: bool) -> Any:
    """A layer's final state (D, B, H) (LSTM: a ``pair`` (h, c)) as (B, D, H)."""
    if pair:
        return final[0].transpose(0, 1), final[1].transpose(0, 1)
    return final.transpose(0, 1)


def _single_layer(rnn: nn.RNNBase, layer: int) -> nn.RNNBase:
    """A one-layer, batch-first RNN of ``rnn``'s kind whose parameters are layer ``layer``'s."""
    hidden = rnn.proj_size if getattr(rnn, "proj_size", 0) else rnn.hidden_size
    directions = 2 if rnn.bidirectional else 1
    inputs = rnn.input_size if layer == 0 else hidden * directions
    options: dict[str, Any] = {
        "num_layers": 1,
        "bias": rnn.bias,
        "batch_first": True,
        "bidirectional": rnn.bidirectional,
        "device": "meta",
    }
    single: nn.RNNBase
    if isinstance(rnn, nn.LSTM):
        single = nn.LSTM(inputs, rnn.hidden_size, proj_size=rnn.proj_size, **options)
    elif isinstance(rnn, nn.GRU):
        single = nn.GRU(inputs, rnn.hidden_size, **options)
    else:
        single = nn.RNN(inputs, rnn.hidden_size, nonlinearity=rnn.nonlinearity, **options)
    for name in single._flat_weights_names:
        setattr(single, name, getattr(rnn, name.replace("_l0", f"_l{layer}", 1)))
    return single


def unroll_recurrent_dropout(model: nn.Module) -> list[str]:
    """Replace every ``nn.LSTM``/``GRU``/``RNN`` (exactly those classes) with more than one layer
    and ``dropout > 0`` by a :class:`StackedRNN`, in place; returns the names replaced."""
    targets = [
        name
        for name, module in model.named_modules()
        if type(module) in _STACKABLE
        and isinstance(module, nn.RNNBase)
        and module.num_layers > 1
        and module.dropout > 0
        and name
    ]
    for name in targets:
        parent_name, _, attribute = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        rnn = model.get_submodule(name)
        assert isinstance(rnn, nn.RNNBase)
        setattr(parent, attribute, StackedRNN(rnn))
    return targets
