"""Keyword spotting over log-mel frames of variable length: the ``spoken-digits`` demo's model."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class KeywordGRU(nn.Module):
    """Log-mel frames (B, T, n_mels) and their lengths (B,) -> class logits (B, classes).

    ``(x - mean) / std`` (one scalar each, the training set's), frames past a row's length
    zeroed -> dropout on the frames (``drop_frames``; time-locked when the card shares its mask
    over dimension 1) -> Conv1d over time, stride 2, ReLU -> a stacked GRU (``num_layers`` with
    ``dropout`` between them: recurrent dropout mcdrop samples) -> mean of the true steps ->
    dropout -> linear. Forward takes ``lengths`` (card ``input.lengths: true``); traceable by
    torch.fx, so the part before the first dropout runs once per row.
    """

    def __init__(
        self,
        n_mels: int = 40,
        num_classes: int = 10,
        channels: int = 64,
        hidden: int = 64,
        num_layers: int = 2,
        p_frames: float = 0.1,
        p: float = 0.3,
        mean: float = 0.0,
        std: float = 1.0,
    ) -> None:
        super().__init__()
        self.mean, self.std = mean, std
        self.drop_frames = nn.Dropout(p_frames)
        self.conv = nn.Conv1d(n_mels, channels, kernel_size=5, stride=2, padding=2)
        self.rnn = nn.GRU(channels, hidden, num_layers=num_layers, dropout=p, batch_first=True)
        self.drop = nn.Dropout(p)
        self.out = nn.Linear(hidden, num_classes)

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        steps = torch.arange(x.shape[1], device=x.device)
        mask = (steps[None, :] < lengths[:, None]).to(x.dtype)
        frames = self.drop_frames((x - self.mean) / self.std * mask[..., None])
        h = torch.relu(self.conv(frames.transpose(1, 2))).transpose(1, 2)
        out, _ = self.rnn(h)
        reduced = (lengths - 1) // 2 + 1  # the conv's output length (kernel 5, stride 2, pad 2)
        kept = (torch.arange(out.shape[1], device=x.device)[None, :] < reduced[:, None]).to(x.dtype)
        pooled = (out * kept[..., None]).sum(1) / reduced[:, None].to(x.dtype)
        logits: Tensor = self.out(self.drop(pooled))
        return logits
