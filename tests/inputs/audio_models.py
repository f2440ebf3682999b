"""Tiny random-weight audio models over log-mel frames with their lengths (GRU, LSTM, Conv1d),
written as model folders, and generated clips (tones in noise) to send them."""

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

import numpy as np
import torch
import yaml
from safetensors.torch import save_file

from app.engine.audio import encode_wav

SOURCE = textwrap.dedent(
    '''
    import torch
    from torch import nn

    SHARPEN = 5.0
    """Logits scaled up so that what dropout does is far beyond Monte Carlo error."""


    def last_step(out: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, T, H) -> (B, H): each row's output at its last true step."""
        rows = torch.arange(out.shape[0], device=out.device)
        return out[rows, lengths - 1]


    class FramesGRU(nn.Module):
        """Log-mel (B, T, F) and lengths -> time-locked input dropout -> 2-layer GRU (recurrent
        dropout between layers) -> last true step -> dropout -> linear."""

        def __init__(self, mels: int = 8, hidden: int = 16, classes: int = 3, p: float = 0.3):
            super().__init__()
            self.drop_in = nn.Dropout(p)
            self.rnn = nn.GRU(mels, hidden, num_layers=2, dropout=p, batch_first=True)
            self.drop = nn.Dropout(p)
            self.out = nn.Linear(hidden, classes)

        def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
            out, _ = self.rnn(self.drop_in((x + 6) / 3))
            return SHARPEN * self.out(self.drop(last_step(out, lengths)))


    class FramesLSTM(FramesGRU):
        """FramesGRU with a 2-layer LSTM."""

        def __init__(self, mels: int = 8, hidden: int = 16, classes: int = 3, p: float = 0.3):
            super().__init__(mels, hidden, classes, p)
            self.rnn = nn.LSTM(mels, hidden, num_layers=2, dropout=p, batch_first=True)


    class FramesConv(nn.Module):
        """Log-mel (B, T, F) and lengths -> two Conv1d over time (steps past a row's length
        zeroed after each, so padding never leaks in) with time-locked channel dropout ->
        masked mean over time -> dropout -> linear."""

        def __init__(self, mels: int = 8, hidden: int = 16, classes: int = 3, p: float = 0.3):
            super().__init__()
            self.conv1 = nn.Conv1d(mels, hidden, 5, padding=2)
            self.drop_conv = nn.Dropout(p)
            self.conv2 = nn.Conv1d(hidden, hidden, 3, padding=1)
            self.drop = nn.Dropout(p)
            self.out = nn.Linear(hidden, classes)

        def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
            steps = torch.arange(x.shape[1], device=x.device)
            mask = (steps[None, :] < lengths[:, None]).to(x.dtype)[:, None, :]
            h = torch.relu(self.conv1(x.transpose(1, 2) / 10 * mask)) * mask
            h = torch.relu(self.conv2(self.drop_conv(h))) * mask
            pooled = h.sum(2) / lengths[:, None].to(x.dtype)
            return SHARPEN * self.out(self.drop(pooled))


    class WaveConv(nn.Module):
        """Waveform (B, T) and lengths -> strided Conv1d (steps from past a row's length
        dropped) with time-locked channel dropout -> mean of the valid steps -> linear."""

        def __init__(self, channels: int = 8, classes: int = 3, p: float = 0.3):
            super().__init__()
            self.conv = nn.Conv1d(1, channels, 64, stride=32)
            self.drop_conv = nn.Dropout(p)
            self.out = nn.Linear(channels, classes)

        def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
            steps = torch.arange(x.shape[1], device=x.device)
            x = x * (steps[None, :] < lengths[:, None]).to(x.dtype)
            h = torch.relu(self.conv(x[:, None, :] * 4))
            starts = torch.arange(h.shape[2], device=x.device) * 32
            valid = (starts[None, :] < lengths[:, None]).to(x.dtype)[:, None, :]
            h = self.drop_conv(h) * valid
            return SHARPEN * self.out(h.sum(2) / valid.sum(2))


    class LockedDropout(nn.Module):
        """AWD-LSTM's locked dropout (training mode only): one mask per row over ``dim``."""

        def __init__(self, p: float, dim: int):
            super().__init__()
            self.p, self.dim = p, dim

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if not self.training:
                return x
            shape = list(x.shape)
            shape[self.dim] = 1
            mask = torch.bernoulli(torch.full(shape, 1 - self.p, dtype=x.dtype)) / (1 - self.p)
            return x * mask
    '''
)
SAMPLE_RATE = 8000
N_MELS = 8
INPUT: dict[str, Any] = {
    "type": "audio",
    "sample_rate": SAMPLE_RATE,
    "max_seconds": 1.0,
    "features": {"log_mel": {"n_mels": N_MELS, "win_ms": 32, "hop_ms": 16}},
    "lengths": True,
}
"""The models' card input section: 8 kHz clips up to 1 s, 8 log-mel bands, 32/16 ms frames."""
SHARE: dict[str, dict[str, list[int]]] = {
    "FramesGRU": {"drop_in": [1]},
    "FramesLSTM": {"drop_in": [1]},
    "FramesConv": {"drop_conv": [2]},
    "WaveConv": {"drop_conv": [2]},
}
"""Each model's time-locked sites: one mask per row over the time axis."""
LOCKED: dict[str, tuple[str, int]] = {
    "FramesGRU": ("drop_in", 1),
    "FramesLSTM": ("drop_in", 1),
    "FramesConv": ("drop_conv", 2),
    "WaveConv": ("drop_conv", 2),
}
WAVEFORM_INPUT: dict[str, Any] = {**INPUT, "features": "waveform", "max_seconds": 1.0}
"""WaveConv's card input section: the samples themselves, rows [T]."""


@functools.cache
def source_module() -> ModuleType:
    """The source above imported from a file: the reference models of the tests."""
    path = Path(tempfile.mkdtemp(prefix="mcdrop-audio-models-")) / "audio_models_src.py"
    path.write_text(SOURCE)
    spec = importlib.util.spec_from_file_location("audio_models_src", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["audio_models_src"] = module
    spec.loader.exec_module(module)
    return module


def reference_model(cls: str, seed: int = 0, locked: bool = True) -> torch.nn.Module:
    """The class with seeded random weights, in eval mode; with ``locked`` its time-locked site
    is AWD-LSTM's LockedDropout, so the model's own training-mode dropout is the reference."""
    torch.manual_seed(seed)
    module = source_module()
    model: torch.nn.Module = getattr(module, cls)()
    if locked:
        name, dim = LOCKED[cls]
        setattr(model, name, module.LockedDropout(0.3, dim))
    return model.eval()


def write_audio_model(root: Path, cls: str, name: str | None = None, **card: Any) -> Path:
    """A model folder of ``cls`` with the weights of ``reference_model(cls)``."""
    folder = root / (name or cls.lower())
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "net.py").write_text(SOURCE)
    weights = folder / "model.safetensors"
    save_file(reference_model(cls, locked=False).state_dict(), str(weights))
    document: dict[str, Any] = {
        "name": name or cls.lower(),
        "task": "classification",
        "labels": ["a", "b", "c"],
        "input": WAVEFORM_INPUT if cls == "WaveConv" else INPUT,
        "architecture": {"file": "net.py", "class": cls},
        "weights": {
            "file": "model.safetensors",
            "sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
        },
        "mc_dropout": {"sites": "all", "share": SHARE[cls]},
        "n_samples": {"default": 32, "max": 4096},
        **card,
    }
    (folder / "model.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    return folder


def tone(
    hz: float, seconds: float, rate: int = SAMPLE_RATE, noise: float = 0.05, seed: int = 0
) -> np.ndarray:
    """(samples,) float32: a sine of ``hz`` at amplitude 0.5 plus seeded Gaussian noise."""
    t = np.arange(int(seconds * rate)) / rate
    noisy = 0.5 * np.sin(2 * np.pi * hz * t)
    noisy += noise * np.random.default_rng(seed).standard_normal(t.shape[0])
    return noisy.astype(np.float32)


def clips(rate: int = SAMPLE_RATE) -> list[bytes]:
    """Four WAV clips of different lengths and contents: tones, a chirp-like pair, noise."""
    waves = [
        tone(300, 0.5, rate, seed=1),
        tone(1200, 0.21, rate, seed=2),
        tone(600, 0.83, rate, seed=3) + tone(2500, 0.83, rate, noise=0.0),
        np.random.default_rng(4).uniform(-0.5, 0.5, int(0.37 * rate)).astype(np.float32),
    ]
    return [encode_wav(np.clip(wave, -1, 1), rate) for wave in waves]
