"""The image kind: encoded images (b64 rows, files, v2 BYTES) and float rows, through the card's
preprocessing; a probe of generated images of the model's size and channels."""

from __future__ import annotations

import base64
import io
import struct

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from app.engine.images import ImagePreprocessing
from app.inputs.base import INPUT_NAME, Rows, WireTensor
from app.inputs.image import ImageKind
from tests.inputs.kind_contract import KindCase, check_input_kind

LIMIT = float(torch.finfo(torch.float32).max)


def _kind(channels: int = 1) -> ImageKind:
    spec = ImagePreprocessing(channels=channels, size=(8, 6), center_crop=False)
    return ImageKind(spec, [channels, 8, 6], LIMIT, 1_000_000, probe_size=(8, 6))


def _png(seed: int, mode: str = "L", size: tuple[int, int] = (12, 10)) -> bytes:
    shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], 3)
    pixels = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode=mode).save(buffer, format="PNG")
    return buffer.getvalue()


def _sized(channels: int, height: int, width: int) -> object:
    def check(rows: Rows, probe: Tensor) -> bool:
        images = [Image.open(io.BytesIO(row)) for row in rows]
        mode = "L" if channels == 1 else "RGB"
        fits = all(im.size == (width, height) and im.mode == mode for im in images)
        return fits and probe.shape[1:] == (channels, height, width)

    return check


def test_images_keep_the_contract() -> None:
    images = [_png(0), _png(1)]
    b64 = [base64.b64encode(image).decode() for image in images]
    raw = b"".join(struct.pack("<I", len(image)) + image for image in images)
    check_input_kind(
        KindCase(
            kind=_kind(),
            rows=[{"b64": value} for value in b64],
            v2_json=WireTensor(INPUT_NAME, "BYTES", [2], data=b64),
            v2_binary=WireTensor(INPUT_NAME, "BYTES", [2], binary_size=len(raw), binary=raw),
            bad_rows=[{"b64": b64[0]}, {"b64": base64.b64encode(b"GIF89a").decode()}],
            bad_field="inputs[1]",
            in_domain=_sized(1, 8, 6),  # type: ignore[arg-type]
            describes="image",
        )
    )


def test_rgb_probe_images_have_three_channels() -> None:
    kind = _kind(channels=3)
    assert _sized(3, 8, 6)(kind.example_rows(2), kind.probe(2))  # type: ignore[operator]


def test_files_and_float_rows_are_rows_too() -> None:
    kind = _kind()
    image = _png(3)
    from_file = kind.rows([image], 1)
    assert torch.equal(from_file, kind.rows([{"b64": base64.b64encode(image).decode()}], 1))
    assert torch.equal(kind.rows(from_file.tolist(), 1), from_file)
    array = WireTensor(INPUT_NAME, "FP64", [1, 1, 8, 6], data=from_file.flatten().tolist())
    assert torch.equal(kind.rows(kind.v2_rows({INPUT_NAME: array}), 1), from_file)
