"""Tiny models with every kind of randomness the issue names, as model folders, and their own
torch MC dropout as the reference (the model in training mode, norm layers frozen)."""

from __future__ import annotations

import hashlib
import importlib.util
import sys
import textwrap
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors.torch import save_file
from torch import Tensor, nn

SEQUENCE = (12, 4)
"""(T, F) of one input row."""

SOURCE = textwrap.dedent(
    '''
    import torch
    from torch import nn
    from torch.nn import functional as F

    RNNS = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}


    class SpeechRNN(nn.Module):
        """A stacked RNN over (B, T, F) with inter-layer dropout, then a dropout head."""

        def __init__(self, kind: str = "lstm", layers: int = 2, p: float = 0.5,
                     head_p: float = 0.05, batch_first: bool = True,
                     bidirectional: bool = False, hidden: int = 16) -> None:
            super().__init__()
            self.batch_first = batch_first
            self.rnn = RNNS[kind](4, hidden, num_layers=layers, dropout=p,
                                  batch_first=batch_first, bidirectional=bidirectional)
            width = hidden * (2 if bidirectional else 1)
            self.drop = nn.Dropout(head_p)
            self.head = nn.Linear(width, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if not self.batch_first:
                x = x.transpose(0, 1)
            out, _ = self.rnn(x)
            if not self.batch_first:
                out = out.transpose(0, 1)
            return self.head(self.drop(out.mean(1)))


    class LockedDropout(nn.Module):
        """AWD-LSTM's locked dropout: one mask per sequence and unit, shared over time."""

        def __init__(self, p: float) -> None:
            super().__init__()
            self.p = p

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if not self.training or not self.p:
                return x
            mask = x.new_empty(x.size(0), 1, x.size(2)).bernoulli_(1 - self.p) / (1 - self.p)
            return x * mask


    class LockedLSTM(nn.Module):
        def __init__(self, p: float = 0.5) -> None:
            super().__init__()
            self.rnn = nn.LSTM(4, 16, batch_first=True)
            self.locked = LockedDropout(p)
            self.drop = nn.Dropout(0.05)
            self.head = nn.Linear(16, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out, _ = self.rnn(x)
            return self.head(self.drop(self.locked(out).mean(1)))


    class TimeLockedLSTM(nn.Module):
        """An LSTM whose output dropout is an nn.Dropout (for mcdrop's shared masks) or, as the
        reference, a LockedDropout: both one mask per sequence and unit when locked."""

        def __init__(self, p: float = 0.5, locked: bool = False) -> None:
            super().__init__()
            self.rnn = nn.LSTM(4, 16, batch_first=True)
            self.drop = LockedDropout(p) if locked else nn.Dropout(p)
            self.head = nn.Linear(16, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out, _ = self.rnn(x)
            return self.head(self.drop(out).mean(1))


    class DropConnectLinear(nn.Linear):
        """DropConnect: dropout on the weights in training mode."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            weight = F.dropout(self.weight, 0.3, training=self.training)
            return F.linear(x, weight, self.bias)


    class GaussianNoise(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + 0.5 * torch.randn_like(x) if self.training else x


    class StochasticDepth(nn.Module):
        """A residual block skipped with probability p per row in training mode."""

        def __init__(self, width: int, p: float = 0.5) -> None:
            super().__init__()
            self.block = nn.Linear(width, width)
            self.p = p

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if not self.training:
                return x + self.block(x)
            keep = (torch.rand(x.size(0), 1) >= self.p).to(x.dtype) / (1 - self.p)
            return x + keep * self.block(x)


    class Flat(nn.Module):
        """(B, T, F) -> a hidden layer (with one of the custom stochastic modules) -> 2."""

        def __init__(self, extra: str = "dropconnect") -> None:
            super().__init__()
            self.inp = nn.Linear(48, 16)
            self.drop = nn.Dropout(0.1)
            if extra == "dropconnect":
                self.extra = DropConnectLinear(16, 16)
            elif extra == "noise":
                self.extra = nn.Sequential(nn.Linear(16, 16), GaussianNoise())
            else:
                self.extra = StochasticDepth(16)
            self.head = nn.Linear(16, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.drop(torch.tanh(self.inp(x.flatten(1))))
            return self.head(torch.tanh(self.extra(h)))


    class VariationalGRU(nn.Module):
        """Gal & Ghahramani's variational RNN: a GRUCell loop, one hidden-state mask per
        sequence; the loop over x.size(1) cannot be traced by torch.fx."""

        def __init__(self, p: float = 0.5, always: bool = False) -> None:
            super().__init__()
            self.cell = nn.GRUCell(4, 16)
            self.head = nn.Linear(16, 2)
            self.p = p
            self.always = always

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = x.new_zeros(x.size(0), 16)
            on = self.always or self.training
            mask = F.dropout(torch.ones_like(h), self.p, training=on)
            for t in range(x.size(1)):
                h = self.cell(x[:, t], h) * mask
            return self.head(h)
    '''
)


def source_module(folder: Path) -> Any:
    """The folder's net.py imported as a fresh module (the reference's own copy of the code)."""
    name = f"stochastic_reference_{hashlib.sha256(str(folder).encode()).hexdigest()[:12]}"
    spec = importlib.util.spec_from_file_location(name, folder / "net.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def write_folder(
    root: Path, name: str, cls: str, kwargs: dict[str, Any] | None = None, **card: Any
) -> Path:
    """A model folder serving ``cls(**kwargs)`` from SOURCE, seeded weights, input (T, F)."""
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "net.py").write_text(SOURCE)
    torch.manual_seed(0)
    network = getattr(source_module(folder), cls)(**(kwargs or {}))
    with torch.no_grad():  # weights large enough for the randomness to show in the output
        for parameter in network.parameters():
            parameter.mul_(3.0)
    save_file(
        {k: v.contiguous() for k, v in network.state_dict().items()}, str(folder / "w.safetensors")
    )
    digest = hashlib.sha256((folder / "w.safetensors").read_bytes()).hexdigest()
    document = {
        "name": name,
        "task": "classification",
        "input": {"shape": list(SEQUENCE)},
        "labels": ["no", "yes"],
        "architecture": {"file": "net.py", "class": cls, "kwargs": kwargs or {}},
        "weights": {"file": "w.safetensors", "sha256": digest},
        **card,
    }
    (folder / "model.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    return folder


def reference_network(folder: Path, **overrides: Any) -> nn.Module:
    """The folder's model built from its own code and weights, untouched by mcdrop (``overrides``
    change constructor arguments)."""
    from safetensors.torch import load_file

    card = yaml.safe_load((folder / "model.yaml").read_text())
    architecture = card["architecture"]
    network: nn.Module = getattr(source_module(folder), architecture["class"])(
        **{**architecture["kwargs"], **overrides}
    )
    network.load_state_dict(load_file(str(folder / "w.safetensors")))
    return network.eval()


def torch_mc_dropout(
    network: nn.Module, x: Tensor, passes: int, seed: int = 0, per_call: int = 200
) -> Tensor:
    """The model's own MC dropout: every module in training mode except normalization layers,
    ``passes`` passes on x (B, ...); outputs (passes, B, ...). ``per_call`` passes run in one
    forward call (x repeated): independent passes for randomness drawn per row; use 1 for a
    model whose draws are shared by a call's rows (DropConnect's weight mask)."""
    network.train()
    for module in network.modules():
        if isinstance(module, nn.modules.batchnorm._NormBase):
            module.eval()
    torch.manual_seed(seed)
    outputs = []
    try:
        with torch.no_grad():
            for start in range(0, passes, per_call):
                n = min(per_call, passes - start)
                out = network(x.repeat(n, *[1] * (x.dim() - 1)))
                outputs.append(out.view(n, x.shape[0], *out.shape[1:]))
    finally:
        network.eval()
    return torch.cat(outputs)


CUSTOM_SOURCES: list[tuple[str, dict[str, Any], str, str, int]] = [
    ("LockedLSTM", {}, "locked", "LockedDropout", 200),
    ("Flat", {"extra": "dropconnect"}, "extra", "DropConnectLinear", 1),
    ("Flat", {"extra": "noise"}, "extra.1", "GaussianNoise", 200),
    ("Flat", {"extra": "depth"}, "extra", "StochasticDepth", 200),
]
"""The custom random modules of SOURCE: (class, kwargs, module name, its class, passes per
forward call of the torch reference; DropConnect draws one weight mask per call)."""
CUSTOM_IDS = ["locked-dropout", "dropconnect", "noise", "stochastic-depth"]


def noise_rows(rows: int = 3) -> torch.Tensor:
    """Seeded (rows, *SEQUENCE) inputs for the custom models."""
    return torch.randn((rows, *SEQUENCE), generator=torch.Generator().manual_seed(1))
