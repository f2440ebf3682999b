"""A small convolutional classifier for the 8x8 scikit-learn digits."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from app.architectures.layers import Standardize


class DigitsCNN(nn.Module):
    """Standardize -> conv blocks -> flatten -> Linear -> ReLU -> Dropout(p) -> Linear.

    Input: (B, in_channels, image_size, image_size) raw pixels (0..16 for digits), standardised
    with scalar `mean`/`std` buffers of shape (1,). Each conv block is
    Conv2d 3x3 (padding 1) -> BatchNorm2d -> ReLU; the first is followed by MaxPool2d(2).
    Output: (B, num_classes) logits.

    Dropout sits only in the head, so everything before it is deterministic at MC time and a
    sampler may run the backbone once and repeat only the head.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        channels: Sequence[int] = (16, 32),
        hidden: int = 64,
        p: float = 0.3,
        image_size: int = 8,
    ) -> None:
        super().__init__()
        if not channels:
            raise ValueError("channels must list at least one conv block width")
        if image_size % 2 != 0:
            raise ValueError(f"image_size must be even (one 2x2 max-pool), got {image_size}")
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability p must be in [0, 1), got {p}")
        self.standardize = Standardize(1)
        blocks: list[nn.Module] = []
        width = in_channels
        for i, out in enumerate(channels):
            blocks += [nn.Conv2d(width, out, 3, padding=1), nn.BatchNorm2d(out), nn.ReLU()]
            if i == 0:
                blocks.append(nn.MaxPool2d(2))
            width = out
        self.features = nn.Sequential(*blocks)
        side = image_size // 2
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(width * side * side, hidden),
            nn.ReLU(),
            nn.Dropout(p),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.head(self.features(self.standardize(x)))
        return out
