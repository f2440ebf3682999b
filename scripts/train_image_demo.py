"""Train the bundled image demo, ``digits-image``: a small CNN that reads grey PNGs.

The images are scikit-learn's 8x8 digits, upscaled to 32x32 grey images with Pillow (the same
train/test split as the other demo models), so clients send real image files and the server's
preprocessing (decode, grey, /255, normalise with the card's mean and std) feeds the model. The
architecture is the bundled DigitsCNN with dropout only in its head, so the backbone runs once
per image and only the head runs per MC pass.

Also writes the demo pictures (``--pictures``, default ``docs/images/``): a few test digits, and
two out-of-distribution images (a drawn letter and seeded noise) that get a much higher mutual
information than the digits.

Usage: ``python scripts/train_image_demo.py [--out models] [--pictures docs/images]``.
"""

from __future__ import annotations

import argparse
import io
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import Tensor, nn
from train_demo_models import (
    DIGIT_LABELS,
    N_SAMPLES,
    SPLIT_SEED,
    _fit,
    digits_split,
    mc_accuracy,
    write_weights_and_card,
)

from app.architectures import build_bundled

NAME = "digits-image"
SCRIPT = "scripts/train_image_demo.py"
SIDE = 32
"""Height and width of the demo images."""
KWARGS: dict[str, object] = {
    "in_channels": 1,
    "num_classes": 10,
    "channels": [16, 32],
    "hidden": 64,
    "p": 0.3,
    "image_size": SIDE,
}
PICTURES = {"digit-0.png": 0, "digit-3.png": 3, "digit-7.png": 7}
"""Demo file -> digit: the first test image of that class."""


def digit_image(row: np.ndarray) -> Image.Image:
    """One 8x8 digits row (64 values, 0..16) as a 32x32 grey image (bilinear upscaling)."""
    pixels = np.rint(row.reshape(8, 8) * (255.0 / 16.0)).astype(np.uint8)
    return Image.fromarray(pixels, mode="L").resize((SIDE, SIDE), Image.Resampling.BILINEAR)


def letter_image() -> Image.Image:
    """A capital A drawn with lines: a shape the digits never show."""
    image = Image.new("L", (SIDE, SIDE), 0)
    draw = ImageDraw.Draw(image)
    draw.line([(6, 28), (16, 4), (26, 28)], fill=255, width=3)
    draw.line([(10, 19), (22, 19)], fill=255, width=3)
    return image


def noise_image() -> Image.Image:
    """Seeded uniform noise, a photo-like texture unlike any digit."""
    generator = np.random.default_rng(SPLIT_SEED)
    return Image.fromarray(generator.integers(0, 256, (SIDE, SIDE), dtype=np.uint8), mode="L")


def png_bytes(image: Image.Image) -> bytes:
    """The image encoded as PNG (deterministic: no timestamps or text chunks)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def image_arrays() -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(x_train, x_test) as (N, 1, 32, 32) pixels in [0, 1], (y_train, y_test) class indices.

    Each row goes through a PNG round trip, exactly what the server decodes."""
    x_train, x_test, y_train, y_test = digits_split()

    def pixels(rows: np.ndarray) -> Tensor:
        images = [np.asarray(Image.open(io.BytesIO(png_bytes(digit_image(r))))) for r in rows]
        return torch.from_numpy(np.stack(images)).float().div(255.0).unsqueeze(1)

    return pixels(x_train), pixels(x_test), torch.from_numpy(y_train), torch.from_numpy(y_test)


def train() -> tuple[nn.Module, dict[str, object]]:
    """The trained model and its card (without the weights' checksum)."""
    started = time.perf_counter()
    x_train, x_test, y_train, y_test = image_arrays()
    mean, std = round(float(x_train.mean()), 4), round(float(x_train.std()), 4)
    torch.manual_seed(SPLIT_SEED)
    model = build_bundled("digits_cnn", KWARGS)
    _fit(
        model, (x_train - mean) / std, y_train, nn.functional.cross_entropy,
        epochs=30, lr=3e-3, weight_decay=1e-4, batch_size=64,
    )  # fmt: skip
    accuracy = mc_accuracy(model, (x_test - mean) / std, y_test)
    card: dict[str, object] = {
        "name": NAME,
        "version": "1",
        "task": "classification",
        "description": "Small CNN on grey 32x32 PNGs of scikit-learn's digits, dropout in head.",
        "input": {"type": "image", "channels": 1, "size": [SIDE, SIDE], "center_crop": True}
        | {"resize": SIDE, "mean": [mean], "std": [std]},
        "labels": DIGIT_LABELS,
        "architecture": {"bundled": "digits_cnn", "kwargs": KWARGS},
        "n_samples": dict(N_SAMPLES),
        "training": {
            "script": SCRIPT,
            "test_accuracy": round(accuracy, 4),
            "n_test": len(y_test),
        },
    }
    print(f"{NAME}: MC test accuracy {accuracy:.4f} in {time.perf_counter() - started:.1f} s")
    return model, card


def write_model(out_dir: Path, model: nn.Module, card: dict[str, object]) -> None:
    """``out_dir/digits-image/model.safetensors`` and its ``model.yaml``."""
    write_weights_and_card(out_dir / NAME, model, card)


def write_pictures(folder: Path) -> None:
    """The demo PNGs: test digits, a letter and noise."""
    folder.mkdir(parents=True, exist_ok=True)
    _, x_test, _, y_test = digits_split()
    for file, digit in PICTURES.items():
        row = x_test[int(np.flatnonzero(y_test == digit)[0])]
        (folder / file).write_bytes(png_bytes(digit_image(row)))
    (folder / "letter-a.png").write_bytes(png_bytes(letter_image()))
    (folder / "noise.png").write_bytes(png_bytes(noise_image()))


def main(argv: list[str] | None = None) -> None:
    """Parse flags, train, write the model and the pictures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=Path("models"), help="model repository")
    parser.add_argument("--pictures", type=Path, default=Path("docs/images"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    model, card = train()
    write_model(args.out, model, card)
    write_pictures(args.pictures)


if __name__ == "__main__":
    main()
