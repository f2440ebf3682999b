"""Small U-Nets for the segmentation task, as model folders (a Python file or TorchScript), and
their inputs: tiny seeded weights, Dropout2d in the encoder's bottleneck and in the decoder."""

from __future__ import annotations

import hashlib
import textwrap
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors.torch import save_file

from tests.stochastic_models import source_module

SIZE = 16
"""Height and width of the test images."""

UNET_SOURCE = textwrap.dedent(
    '''
    import torch
    from torch import nn
    from torch.nn import functional as F


    def block(cin: int, cout: int) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU()
        )


    class TinyUNet(nn.Module):
        """A two-level U-Net over (B, in_channels, H, W) -> (B, classes, H, W) logits; dropout
        at the bottleneck (``bottleneck_p``) and in the decoder (``p``); the last class is
        the bright one."""

        def __init__(self, in_channels: int = 1, classes: int = 2, width: int = 8,
                     p: float = 0.3, bottleneck_p: float = 0.0, gain: float = 8.0) -> None:
            super().__init__()
            # A fixed intensity prior so that random weights still find the bright disc.
            sign = torch.zeros(1, classes, 1, 1)
            sign[0, 0], sign[0, -1] = -gain, gain
            self.register_buffer("sign", sign, persistent=False)
            self.enc1 = block(in_channels, width)
            self.enc2 = block(width, 2 * width)
            self.bottleneck = block(2 * width, 2 * width)
            self.bottleneck_drop = nn.Dropout2d(bottleneck_p) if bottleneck_p else nn.Identity()
            self.up = nn.ConvTranspose2d(2 * width, width, 2, stride=2)
            self.decoder_drop = nn.Dropout2d(p)
            self.dec = block(2 * width, width)
            self.head_drop = nn.Dropout(p)
            self.out = nn.Conv2d(width, classes, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            skip = self.enc1(x)
            deep = self.bottleneck(self.enc2(F.max_pool2d(skip, 2)))
            deep = self.up(self.bottleneck_drop(deep))
            merged = self.decoder_drop(torch.cat([deep, skip], dim=1))
            prior = (x[:, :1] - 0.5) * self.sign
            return self.out(self.head_drop(self.dec(merged))) + prior
    '''
)


def unet(folder: Path, scale: float = 1.7, **kwargs: Any) -> torch.nn.Module:
    """The folder's TinyUNet with seeded weights (running stats set away from 0 and 1)."""
    torch.manual_seed(0)
    network: torch.nn.Module = source_module(folder).TinyUNet(**kwargs)
    with torch.no_grad():
        for module in network.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
        for parameter in network.parameters():
            parameter.mul_(scale)
    return network.eval()


def write_unet_folder(
    root: Path,
    name: str = "unet",
    kwargs: dict[str, Any] | None = None,
    torchscript: bool = False,
    **card: Any,
) -> Path:
    """A segmentation model folder serving TinyUNet(**kwargs) on (in_channels, SIZE, SIZE)
    tensors: a Python file with safetensors weights, or (``torchscript``) a scripted file."""
    kwargs = kwargs or {}
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "net.py").write_text(UNET_SOURCE)
    network = unet(folder, **kwargs)
    shape = [kwargs.get("in_channels", 1), SIZE, SIZE]
    document: dict[str, Any] = {"name": name, "task": "segmentation", "input": {"shape": shape}}
    if torchscript:
        torch.jit.script(network).save(str(folder / "net.pt"))
        document["architecture"] = {"torchscript": "net.pt"}
    else:
        save_file(
            {k: v.contiguous() for k, v in network.state_dict().items()},
            str(folder / "w.safetensors"),
        )
        digest = hashlib.sha256((folder / "w.safetensors").read_bytes()).hexdigest()
        document["architecture"] = {"file": "net.py", "class": "TinyUNet", "kwargs": kwargs}
        document["weights"] = {"file": "w.safetensors", "sha256": digest}
    (folder / "model.yaml").write_text(yaml.safe_dump({**document, **card}, sort_keys=False))
    return folder


def images(rows: int = 2, channels: int = 1, seed: int = 1, size: int = SIZE) -> torch.Tensor:
    """Seeded (rows, channels, size, size) inputs: a bright disc on noise."""
    generator = torch.Generator().manual_seed(seed)
    grid = torch.arange(size, dtype=torch.float32) - size / 2
    disc = ((grid.view(-1, 1) ** 2 + grid.view(1, -1) ** 2) < (size / 4) ** 2).float()
    noise = 0.3 * torch.randn((rows, channels, size, size), generator=generator)
    return disc + noise
