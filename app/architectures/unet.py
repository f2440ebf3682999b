"""A small U-Net with ``Dropout2d``: the bundled demo ``lesion-seg``'s network.

Three encoder levels of two 3x3 convolutions (BatchNorm, ReLU) with 2x2 max pooling between
them, a bottleneck, and a decoder of transposed convolutions, each concatenated with its
encoder level's output (the skip connection), then two 3x3 convolutions; a 1x1 convolution
gives (B, classes, H, W) logits. Channel dropout (``Dropout2d(p)``) sits after the
bottleneck and after every decoder concatenation: the encoder's output is the same on every
MC pass, only the decoder is sampled. H and W must be multiples of 2^(levels).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


def _double_conv(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class DropoutUNet(nn.Module):
    """(B, in_channels, H, W) -> (B, classes, H, W) logits; ``widths`` the encoder levels'
    channels (the bottleneck has twice the last), ``p`` the Dropout2d probability."""

    def __init__(
        self,
        in_channels: int = 1,
        classes: int = 2,
        widths: Sequence[int] = (8, 16, 32),
        p: float = 0.2,
    ) -> None:
        super().__init__()
        widths = list(widths)
        self.encoders = nn.ModuleList()
        channels = in_channels
        for width in widths:
            self.encoders.append(_double_conv(channels, width))
            channels = width
        self.bottleneck = _double_conv(channels, 2 * channels)
        self.bottleneck_drop = nn.Dropout2d(p)
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        self.decoder_drops = nn.ModuleList()
        channels = 2 * channels
        for width in reversed(widths):
            self.ups.append(nn.ConvTranspose2d(channels, width, 2, stride=2))
            self.decoder_drops.append(nn.Dropout2d(p))
            self.decoders.append(_double_conv(2 * width, width))
            channels = width
        self.head = nn.Conv2d(channels, classes, 1)

    def forward(self, x: Tensor) -> Tensor:
        skips = []
        for encoder in self.encoders:
            x = encoder(x)
            skips.append(x)
            x = nn.functional.max_pool2d(x, 2)
        x = self.bottleneck_drop(self.bottleneck(x))
        for up, drop, decoder, skip in zip(
            self.ups, self.decoder_drops, self.decoders, reversed(skips), strict=True
        ):
            x = decoder(drop(torch.cat([up(x), skip], dim=1)))
        logits: Tensor = self.head(x)
        return logits
