"""Train the bundled segmentation demo, ``lesion-seg``: a small U-Net with ``Dropout2d`` on
synthetic 2D "scans". Nothing here is medical data: every image is drawn by :func:`make_scan`.

A scan is 64 x 64 grey: a dark field with a brighter elliptical "organ" carrying a smooth
texture, 0 to 2 lesions inside it (blobs with wobbly boundaries, soft edges, radius 3 to 10 px,
contrast 0.06 to 0.45 above the tissue), Gaussian noise, and in a third of the scans an
artefact that is not a lesion (a bright streak across the image, or a small square marker in
a corner). The target mask is the lesions' pixels. Everything is drawn from
``numpy.random.default_rng(seed)``: the same seed gives the same scans on any machine.

The network is the bundled :class:`app.architectures.unet.DropoutUNet` (Dropout2d after the
bottleneck and in the decoder), trained with one thread (torch's CPU kernels are then
deterministic) on cross-entropy + soft Dice. The script writes ``models/lesion-seg/``
(``model.safetensors``, ``model.yaml``) and the sample images of ``samples/``: an easy scan,
a low-contrast one, an out-of-distribution picture and the easy scan as a DICOM file.

Usage: ``python scripts/train_lesion_seg.py [--out models]``, or
``python scripts/train_lesion_seg.py --eval-set lesion-eval.npz`` to write only a seeded
evaluation set (``inputs`` (B, 1, 64, 64), ``masks`` (B, 64, 64)) for ``mcdrop evaluate``.
"""

from __future__ import annotations

import argparse
import io
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn
from train_demo_models import write_weights_and_card

from app.architectures import build_bundled

NAME = "lesion-seg"
SCRIPT = "scripts/train_lesion_seg.py"
SIDE = 64
KWARGS: dict[str, object] = {"in_channels": 1, "classes": 2, "widths": [8, 16, 32], "p": 0.2}
TRAIN_SEED, TEST_SEED, EVAL_SEED = 0, 1, 2
TRAIN_SCANS, TEST_SCANS = 1600, 200
EPOCHS, BATCH, LR = 5, 32, 3e-3
MC_PASSES = 30


@dataclass(frozen=True)
class Lesion:
    """One lesion: centre (row, column), radius (px), contrast, boundary wobble phases."""

    row: float
    column: float
    radius: float
    contrast: float
    wobble: tuple[float, ...]


def _grid() -> tuple[np.ndarray, np.ndarray]:
    rows, columns = np.mgrid[0:SIDE, 0:SIDE].astype(np.float64)
    return rows, columns


def _smooth_noise(rng: np.random.Generator, scale: float) -> np.ndarray:
    """Low-pass Gaussian noise of unit std (the spectrum cut at ``scale`` cycles per image)."""
    spectrum = np.fft.fft2(rng.standard_normal((SIDE, SIDE)))
    frequency = np.hypot(*np.meshgrid(np.fft.fftfreq(SIDE), np.fft.fftfreq(SIDE)))
    smooth: np.ndarray = np.real(
        np.fft.ifft2(spectrum * np.exp(-((frequency * SIDE / scale) ** 2)))
    )
    normalised: np.ndarray = smooth / (smooth.std() + 1e-12)
    return normalised


def _lesion_mask(lesion: Lesion) -> tuple[np.ndarray, np.ndarray]:
    """(hard mask, soft edge in [0, 1]) of a lesion with a wobbly boundary."""
    rows, columns = _grid()
    dy, dx = rows - lesion.row, columns - lesion.column
    angle = np.arctan2(dy, dx)
    a1, p1, a2, p2, a3, p3 = lesion.wobble
    boundary = lesion.radius * (
        1 + a1 * np.cos(angle + p1) + a2 * np.cos(2 * angle + p2) + a3 * np.cos(3 * angle + p3)
    )
    distance = np.hypot(dy, dx) - boundary
    return distance <= 0, 1.0 / (1.0 + np.exp(distance / 0.8))


def draw_lesion(rng: np.random.Generator, organ: tuple[float, float, float, float]) -> Lesion:
    """A lesion inside the organ ellipse (centre row, column, half-axes)."""
    row0, column0, half_rows, half_columns = organ
    angle, reach = rng.uniform(0, 2 * np.pi), np.sqrt(rng.uniform(0, 0.45))
    bounds = (0.25, 6.3, 0.2, 6.3, 0.12, 6.3)  # amplitude, phase of harmonics 1, 2, 3
    wobble = tuple(float(rng.uniform(0, bound)) for bound in bounds)
    return Lesion(
        row=row0 + reach * half_rows * np.sin(angle),
        column=column0 + reach * half_columns * np.cos(angle),
        radius=rng.uniform(3.0, 10.0),
        contrast=rng.uniform(0.06, 0.45),
        wobble=wobble,
    )


def make_scan(
    rng: np.random.Generator, lesions: list[Lesion] | None = None, noise: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """One scan (64, 64) uint8 and its mask (64, 64) uint8 (1 = lesion). ``lesions`` and
    ``noise`` override the random ones (the README's samples)."""
    rows, columns = _grid()
    organ = (
        SIDE / 2 + rng.uniform(-4, 4),
        SIDE / 2 + rng.uniform(-4, 4),
        rng.uniform(20, 27),
        rng.uniform(20, 27),
    )
    inside = ((rows - organ[0]) / organ[2]) ** 2 + ((columns - organ[1]) / organ[3]) ** 2 <= 1
    tissue = rng.uniform(0.3, 0.45)
    image = np.where(inside, tissue + 0.04 * _smooth_noise(rng, 6.0), rng.uniform(0.02, 0.1))
    image += 0.02 * _smooth_noise(rng, 20.0)
    if lesions is None:
        lesions = [draw_lesion(rng, organ) for _ in range(rng.choice(3, p=[0.15, 0.55, 0.3]))]
    mask = np.zeros((SIDE, SIDE), dtype=bool)
    for lesion in lesions:
        hard, soft = _lesion_mask(lesion)
        image += lesion.contrast * soft
        mask |= hard
    _artefact(rng, image)
    sigma = rng.uniform(0.015, 0.05) if noise is None else noise
    image += sigma * rng.standard_normal((SIDE, SIDE))
    pixels = np.clip(np.rint(image * 255), 0, 255).astype(np.uint8)
    return pixels, mask.astype(np.uint8)


def _artefact(rng: np.random.Generator, image: np.ndarray) -> None:
    """A third of the scans: a bright streak (a line across) or a square marker in a corner."""
    kind = rng.choice(6)
    if kind == 0:
        rows, columns = _grid()
        angle, offset = rng.uniform(0, np.pi), rng.uniform(-20, 20)
        distance = np.abs(
            (rows - SIDE / 2) * np.cos(angle) - (columns - SIDE / 2) * np.sin(angle) - offset
        )
        image += rng.uniform(0.15, 0.35) * np.exp(-((distance / 0.7) ** 2))
    elif kind == 1:
        top, left = rng.choice([2, SIDE - 8]), rng.choice([2, SIDE - 8])
        image[top : top + 5, left : left + 5] = rng.uniform(0.8, 1.0)


def scans(seed: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` seeded scans (count, 64, 64) uint8 and masks (count, 64, 64) uint8."""
    rng = np.random.default_rng(seed)
    pairs = [make_scan(rng) for _ in range(count)]
    return np.stack([p for p, _ in pairs]), np.stack([m for _, m in pairs])


def as_inputs(pixels: np.ndarray) -> Tensor:
    """(B, 1, 64, 64) float32 in [0, 1], what the server makes of the PNGs (pixels / 255)."""
    return torch.from_numpy(pixels).float().div(255.0).unsqueeze(1)


def _loss(logits: Tensor, masks: Tensor) -> Tensor:
    """Cross-entropy + (1 - soft Dice of the lesion class)."""
    cross = nn.functional.cross_entropy(logits, masks)
    lesion = logits.softmax(1)[:, 1]
    truth = masks.float()
    dice = (2 * (lesion * truth).sum() + 1) / (lesion.sum() + truth.sum() + 1)
    return cross + (1 - dice)


def fit(model: nn.Module, pixels: np.ndarray, masks: np.ndarray, epochs: int) -> list[float]:
    """Adam with cosine decay, seeded shuffles; the epochs' mean losses."""
    inputs, targets = as_inputs(pixels), torch.from_numpy(masks).long()
    optimiser = torch.optim.Adam(model.parameters(), lr=LR)
    steps = epochs * ((len(inputs) + BATCH - 1) // BATCH)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, steps)
    generator = torch.Generator().manual_seed(TRAIN_SEED)
    losses = []
    model.train()
    for _ in range(epochs):
        order, total = torch.randperm(len(inputs), generator=generator), 0.0
        for start in range(0, len(inputs), BATCH):
            batch = order[start : start + BATCH]
            loss = _loss(model(inputs[batch]), targets[batch])
            optimiser.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            optimiser.step()
            schedule.step()
            total += float(loss.detach()) * len(batch)
        losses.append(total / len(inputs))
    return losses


def mc_dice(model: nn.Module, pixels: np.ndarray, masks: np.ndarray) -> float:
    """Mean foreground Dice of the MC mean's argmax mask (BatchNorm in eval, dropout on)."""
    model.eval()
    for module in model.modules():
        if isinstance(module, nn.Dropout2d):
            module.train()
    torch.manual_seed(TEST_SEED)
    with torch.no_grad():
        inputs = as_inputs(pixels)
        mean = torch.stack([model(inputs).softmax(1) for _ in range(MC_PASSES)]).mean(0)
    model.eval()
    predicted, truth = mean.argmax(1).bool(), torch.from_numpy(masks).bool()
    both = (predicted & truth).flatten(1).sum(1).double()
    sizes = (predicted.flatten(1).sum(1) + truth.flatten(1).sum(1)).double()
    dice = torch.where(sizes > 0, 2 * both / sizes.clamp_min(1), torch.ones_like(sizes))
    return float(dice.mean())


def train(
    epochs: int = EPOCHS, train_scans: int = TRAIN_SCANS, test_scans: int = TEST_SCANS
) -> tuple[nn.Module, dict[str, object]]:
    """The trained model and its card (without the weights' checksum). Runs on one thread
    with deterministic algorithms, and puts both settings back afterwards."""
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    try:
        started = time.perf_counter()
        torch.manual_seed(TRAIN_SEED)
        model = build_bundled("dropout_unet", KWARGS)
        losses = fit(model, *scans(TRAIN_SEED, train_scans), epochs)
        dice = mc_dice(model, *scans(TEST_SEED, test_scans))
        seconds = time.perf_counter() - started
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)
    rounded = [round(x, 4) for x in losses]
    print(f"{NAME}: losses {rounded}, MC test Dice {dice:.4f}, {seconds:.0f} s")
    return model.eval(), _card(dice)


def _card(dice: float) -> dict[str, object]:
    return {
        "name": NAME,
        "version": "1",
        "task": "segmentation",
        "description": "Small U-Net (Dropout2d in the decoder) on SYNTHETIC 64x64 grey scans "
        "with lesions; a demo, not a medical device, never trained on patient data.",
        "input": {"type": "image", "channels": 1, "size": [SIDE, SIDE], "center_crop": False}
        | {"formats": ["png", "dicom", "nifti"], "window": {"center": 128, "width": 256}},
        "labels": ["background", "lesion"],
        "architecture": {"bundled": "dropout_unet", "kwargs": KWARGS},
        "n_samples": {"default": 30, "max": 200},
        "segmentation": {"uncertainty_threshold": 0.1},
        "training": {
            "script": SCRIPT,
            "test_dice": round(dice, 4),
            "n_test": TEST_SCANS,
            "mc_passes": MC_PASSES,
            "data": "synthetic (scripts/train_lesion_seg.py make_scan), seeds 0 train, 1 test",
        },
    }


def sample_scans() -> dict[str, np.ndarray]:
    """The README's samples: file stem -> (64, 64) uint8 pixels."""
    easy_lesion = Lesion(30.0, 36.0, 8.0, 0.45, (0.1, 1.0, 0.05, 2.0, 0.0, 0.0))
    faint_lesion = Lesion(34.0, 28.0, 6.0, 0.07, (0.2, 0.5, 0.1, 1.0, 0.05, 3.0))
    easy, _ = make_scan(np.random.default_rng(100), [easy_lesion], noise=0.015)
    faint, _ = make_scan(np.random.default_rng(101), [faint_lesion], noise=0.05)
    return {"easy": easy, "low-contrast": faint, "out-of-distribution": ood_picture()}


def ood_picture() -> np.ndarray:
    """Not a scan: a bright, high-contrast checkerboard with a diagonal bar (64, 64) uint8."""
    rows, columns = _grid()
    board = ((rows // 8 + columns // 8) % 2) * 0.6 + 0.2
    bar = np.abs(rows - columns) < 4
    picture: np.ndarray = np.rint(np.where(bar, 1.0, board) * 255).astype(np.uint8)
    return picture


def png_bytes(pixels: np.ndarray) -> bytes:
    """Grey PNG bytes (deterministic: no timestamps or text chunks)."""
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def write_samples(folder: Path) -> None:
    """``samples/*.png`` and ``samples/easy.dcm`` (the easy scan, uncompressed DICOM)."""
    from app.engine.dicom import encode_dicom

    samples = folder / "samples"
    samples.mkdir(parents=True, exist_ok=True)
    pictures = sample_scans()
    for stem, pixels in pictures.items():
        (samples / f"{stem}.png").write_bytes(png_bytes(pixels))
    (samples / "easy.dcm").write_bytes(encode_dicom(pictures["easy"]))


def write_model(out_dir: Path, model: nn.Module, card: dict[str, object]) -> Path:
    """``out_dir/lesion-seg/``: weights, card, samples."""
    folder = out_dir / NAME
    write_weights_and_card(folder, model, card)
    write_samples(folder)
    return folder


def write_eval_set(path: Path, count: int = 64) -> None:
    """A seeded evaluation set for ``mcdrop evaluate``: ``inputs`` and ``masks``."""
    pixels, masks = scans(EVAL_SEED, count)
    np.savez_compressed(path, inputs=as_inputs(pixels).numpy(), masks=masks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("models"))
    parser.add_argument("--eval-set", type=Path, help="write only an evaluation set (.npz)")
    args = parser.parse_args()
    if args.eval_set is not None:
        write_eval_set(args.eval_set)
        print(f"wrote 64 scans and masks to {args.eval_set}")
        return
    model, card = train()
    print(f"wrote {write_model(args.out, model, card)}")


if __name__ == "__main__":
    main()
