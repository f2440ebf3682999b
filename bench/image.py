"""Image benchmark: MC dropout on image classifiers, measured side by side in one run.

1. MobileNetV2 (transformers' default config: 224x224, width 1.0, random weights), batch 1:
   one deterministic forward vs mcdrop at N = 100 (the backbone runs once, the head's dropout
   N times). Target: <= 1.3x one forward.
2. Decoding and preprocessing, reported apart: a 640x480 JPEG decoded with Pillow and run
   through the folder's image processor (shorter side 256, centre crop 224).
3. A ViT with dropout everywhere (hidden, embedding, attention; ``mc_dropout: all``): mcdrop's
   folded sampling vs the textbook loop of N forwards, N = 10 and 30, batch 1.

    python -m bench.image [--repeats 5] [--vit-layers 4] [--threads 1] [--image-size 224]

--image-size makes both networks take smaller pictures (bench/gpu.sh --quick: 64), for a check
of the script on a slow CPU; the numbers above are at 224.

The models run on the device of MCDROP_DEVICE (as for `mcdrop serve`); decoding stays on the CPU.
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from PIL import Image
from torch import nn

from app.engine.dropout import find_dropout_layers
from app.engine.images import images_to_tensor
from app.engine.predictor import PredictionRequest
from app.inputs.image import ImageKind
from app.registry.loading import load_model_folder
from app.registry.served import ServedModel
from bench.common import load_options, markdown_table, synchronize


def write_folder(root: Path, name: str, model: nn.Module, processor: Any) -> Path:
    """A model folder: the save_pretrained model and processor, and its card."""
    folder = root / name
    model.save_pretrained(folder, safe_serialization=True)  # type: ignore[operator]
    processor.save_pretrained(folder)
    card = {
        "name": name,
        "task": "classification",
        "input": {"type": "image"},
        "architecture": {"huggingface": "."},
        "n_samples": {"default": 100, "max": 1000},
    }
    (folder / "model.yaml").write_text(yaml.safe_dump(card))
    return folder


def mobilenet(root: Path, size: int = 224) -> ServedModel:
    """transformers' default MobileNetV2 (ImageNet size at 224) with random weights."""
    import transformers

    torch.manual_seed(0)
    model: nn.Module = transformers.MobileNetV2ForImageClassification(
        transformers.MobileNetV2Config(image_size=size)
    )
    processor = transformers.MobileNetV2ImageProcessorPil(
        size={"shortest_edge": size * 8 // 7}, crop_size={"height": size, "width": size}
    )
    folder = write_folder(root, "mobilenet", model.eval(), processor)
    return load_model_folder(folder, load_options())


def vit(root: Path, layers: int, size: int = 224) -> ServedModel:
    """A ViT-S-like classifier (hidden 384, 6 heads, 224x224, patch 16) with dropout 0.1 on
    hidden states and attention probabilities."""
    import transformers

    options: dict[str, Any] = {"num_labels": 10, "hidden_size": 384, "intermediate_size": 1536}
    options |= {"num_hidden_layers": layers, "num_attention_heads": 6}
    options |= {"hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1}
    torch.manual_seed(0)
    config = transformers.ViTConfig(image_size=size, **options)
    model: nn.Module = transformers.ViTForImageClassification(config)
    processor = transformers.ViTImageProcessorPil(size={"height": size, "width": size})
    return load_model_folder(write_folder(root, "vit", model.eval(), processor), load_options())


def photo_jpeg() -> bytes:
    """A 640x480 photo-like JPEG (smooth gradients plus seeded noise)."""
    generator = np.random.default_rng(0)
    y, x = np.mgrid[0:480, 0:640]
    base = np.stack([x / 640 * 255, y / 480 * 255, (x + y) / 1120 * 255], axis=-1)
    pixels = np.clip(base + generator.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="RGB").save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def loop(model: ServedModel, x: torch.Tensor, n: int) -> torch.Tensor:
    """The textbook MC dropout loop: dropout modules in train mode, N forwards."""
    layers = find_dropout_layers(model.module)
    for layer in layers:
        layer.module.train()
    try:
        with torch.inference_mode():
            x = x.to(next(model.module.parameters()).device)
            return torch.stack([model.module(x) for _ in range(n)])
    finally:
        for layer in layers:
            layer.module.eval()


def forward(model: ServedModel, x: torch.Tensor) -> torch.Tensor:
    """One deterministic forward (eval mode)."""
    with torch.inference_mode():
        output: torch.Tensor = model.module(x.to(next(model.module.parameters()).device))
        return output


def mcdrop(model: ServedModel, x: torch.Tensor, n: int) -> object:
    """mcdrop's predictor: folded sampling (and the head split where the card allows)."""
    return model.predictor.predict(PredictionRequest(x.double(), n, 0.95, seed=0))


def side_by_side(runs: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds of each run, the runs interleaved repeat by repeat so that a busy
    machine slows them alike."""
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for run in runs.values():
        run()  # warm-up
    for _ in range(repeats):
        for name, run in runs.items():
            started = time.perf_counter()
            run()
            synchronize()
            samples[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in samples.items()}


def main(argv: list[str] | None = None) -> None:
    """Run the three measurements and print their tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--vit-layers", type=int, default=4)
    parser.add_argument("--image-size", type=int, default=224, help="pictures' side (pixels)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        net = mobilenet(root, args.image_size)
        jpeg = photo_jpeg()
        assert isinstance(net.input_kind, ImageKind)
        pipeline, limit = net.input_kind.pipeline, 16_777_216
        started = time.perf_counter()
        x = images_to_tensor([jpeg], pipeline, 1, limit)
        assert x is not None
        x = x.float()
        print(
            f"MobileNetV2: {net.split.reason}; first decode {time.perf_counter() - started:.3f} s"
        )
        runs: dict[str, Callable[[], object]] = {
            "decode + preprocess (640x480 JPEG)": partial(
                images_to_tensor, [jpeg], pipeline, 1, limit
            ),
            "one deterministic forward": partial(forward, net, x),
            "mcdrop N = 100 (backbone once)": partial(mcdrop, net, x, 100),
        }
        timings = side_by_side(runs, args.repeats)
        base = timings["one deterministic forward"]
        rows = [[name, seconds * 1000, seconds / base] for name, seconds in timings.items()]
        side = f"{args.image_size}x{args.image_size}"
        print(markdown_table([f"MobileNetV2 {side}, batch 1", "ms", "x forward"], rows))
        transformer = vit(root, args.vit_layers, args.image_size)
        assert isinstance(transformer.input_kind, ImageKind)
        image = images_to_tensor([jpeg], transformer.input_kind.pipeline, 1, limit)
        assert image is not None
        v = image.float()
        print(f"\nViT ({args.vit_layers} layers): {len(transformer.dropout_layers)} dropout sites")
        vit_runs: dict[str, Callable[[], object]] = {"forward": partial(forward, transformer, v)}
        for n in (10, 30):
            vit_runs[f"loop {n}"] = partial(loop, transformer, v, n)
            vit_runs[f"mcdrop {n}"] = partial(mcdrop, transformer, v, n)
        vit_times = side_by_side(vit_runs, args.repeats)
        one = vit_times["forward"]
        rows = [["one forward", 1, one * 1000, "-", 1.0]]
        for n in (10, 30):
            naive, folded = vit_times[f"loop {n}"], vit_times[f"mcdrop {n}"]
            rows.append(["loop", n, naive * 1000, "-", naive / one])
            rows.append(["mcdrop all (folded)", n, folded * 1000, naive / folded, folded / one])
        header = [f"ViT {side}, batch 1", "N", "ms", "loop / mcdrop", "x forward"]
        print(markdown_table(header, rows))


if __name__ == "__main__":
    main()
