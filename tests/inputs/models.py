"""Tiny random-weight models of the tensor kind's new shapes, written as model folders: token
ids through an embedding, and variable-length [T, F] sequences taking their lengths."""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import sys
import tempfile
import textwrap
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
import yaml
from safetensors.torch import save_file

SOURCE = textwrap.dedent(
    '''
    import torch
    from torch import nn


    class TokenBag(nn.Module):
        """Token ids (B, T) -> embedding -> mean over tokens -> dropout -> linear."""

        def __init__(self, vocab: int = 50, dim: int = 16, classes: int = 3, p: float = 0.3):
            super().__init__()
            self.embed = nn.Embedding(vocab, dim)
            self.drop = nn.Dropout(p)
            self.out = nn.Linear(dim, classes)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.out(self.drop(self.embed(x).mean(1)))


    class SequenceGRU(nn.Module):
        """(B, T, F) and lengths (B,) -> GRU over each row's true steps -> dropout -> linear."""

        def __init__(self, features: int = 5, hidden: int = 16, classes: int = 3, p: float = 0.3):
            super().__init__()
            self.gru = nn.GRU(features, hidden, batch_first=True)
            self.drop = nn.Dropout(p)
            self.out = nn.Linear(hidden, classes)

        def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
            packed = nn.utils.rnn.pack_padded_sequence(
                x, lengths.cpu(), batch_first=True, enforce_sorted=False
            )
            _, last = self.gru(packed)
            return self.out(self.drop(last[-1]))


    class MeanPooled(nn.Module):
        """(B, T, F) and lengths -> mean of the true steps -> linear -> ReLU -> dropout -> linear
        (traceable: the part before the dropout runs once per row)."""

        def __init__(self, features: int = 5, hidden: int = 16, classes: int = 3, p: float = 0.3):
            super().__init__()
            self.hidden = nn.Linear(features, hidden)
            self.drop = nn.Dropout(p)
            self.out = nn.Linear(hidden, classes)

        def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
            steps = torch.arange(x.shape[1], device=x.device)
            mask = (steps[None, :] < lengths[:, None]).to(x.dtype)
            pooled = (x * mask[..., None]).sum(1) / lengths[:, None].to(x.dtype)
            return self.out(self.drop(torch.relu(self.hidden(pooled))))
    '''
)
VOCAB = 50
FEATURES = 5
MAX_STEPS = 40
INPUTS: dict[str, dict[str, Any]] = {
    "TokenBag": {"shape": [6], "dtype": "int64", "range": [0, VOCAB]},
    "SequenceGRU": {"shape": [-1, FEATURES], "max_length": MAX_STEPS, "lengths": True},
    "MeanPooled": {"shape": [-1, FEATURES], "max_length": MAX_STEPS, "lengths": True},
}
"""Each model's card input section."""


@functools.cache
def source_module() -> ModuleType:
    """The source above as a Python module imported from a file (TorchScript reads the
    source of what it compiles): the reference models of the tests."""
    path = Path(tempfile.mkdtemp(prefix="mcdrop-sequence-models-")) / "sequence_models.py"
    path.write_text(SOURCE)
    spec = importlib.util.spec_from_file_location("sequence_models", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["sequence_models"] = module
    spec.loader.exec_module(module)
    return module


def reference_model(cls: str, seed: int = 0) -> torch.nn.Module:
    """The class with seeded random weights, in eval mode."""
    torch.manual_seed(seed)
    model: torch.nn.Module = getattr(source_module(), cls)()
    return model.eval()


def write_sequence_model(
    root: Path, cls: str, name: str | None = None, card: dict[str, Any] | None = None
) -> Path:
    """A model folder of ``cls`` with the weights of ``reference_model(cls)``."""
    folder = root / (name or cls.lower())
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "net.py").write_text(SOURCE)
    weights = folder / "model.safetensors"
    save_file(reference_model(cls).state_dict(), str(weights))
    document: dict[str, Any] = {
        "name": name or cls.lower(),
        "task": "classification",
        "labels": ["a", "b", "c"],
        "input": INPUTS[cls],
        "architecture": {"file": "net.py", "class": cls},
        "weights": {
            "file": "model.safetensors",
            "sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
        },
        "n_samples": {"default": 32, "max": 4096},
        **(card or {}),
    }
    (folder / "model.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    return folder
