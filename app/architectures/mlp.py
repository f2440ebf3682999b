"""A multilayer perceptron with dropout after every hidden layer."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from app.architectures.layers import Destandardize, Standardize


class DropoutMLP(nn.Module):
    """Standardize -> [Linear -> ReLU -> Dropout(p)] per hidden layer -> Linear.

    Input: (B, in_features) raw float features; the `Standardize` buffers hold the training
    statistics. Output:
    - classification (`output_standardize=False`): (B, out_features) logits;
    - regression (`output_standardize=True`): (B, out_features) in target units, the network
      having been trained on standardised targets whose statistics live in `destandardize`.
    With `variance_head=True` the output has 2 * out_features columns: the mean first, then the
    log-variance of the aleatoric noise. With `output_standardize=True` the mean is
    destandardised and 2 * log(std) is added to the log-variance, so both are in target units.
    """

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int],
        out_features: int,
        p: float = 0.1,
        variance_head: bool = False,
        output_standardize: bool = False,
    ) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability p must be in [0, 1), got {p}")
        self.out_features = out_features
        self.variance_head = variance_head
        self.output_standardize = output_standardize
        self.standardize = Standardize(in_features)
        layers: list[nn.Module] = []
        width = in_features
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(p)]
            width = size
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, 2 * out_features if variance_head else out_features)
        self.destandardize = Destandardize(out_features) if output_standardize else None

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.head(self.body(self.standardize(x)))
        if self.destandardize is None:
            return out
        if not self.variance_head:
            target: Tensor = self.destandardize(out)
            return target
        mean = self.destandardize(out[:, : self.out_features])
        log_var = out[:, self.out_features :] + 2.0 * torch.log(self.destandardize.std)
        return torch.cat([mean, log_var], dim=1)
