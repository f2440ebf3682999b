"""The soak test's image, text and rank requests: valid ones for the seeded pool, crafted ones
that must each get a 4xx (built once, deterministically, with Pillow and zlib)."""

from __future__ import annotations

import base64
import io
import random
import struct
import zlib
from functools import cache
from typing import Any

import numpy as np
from PIL import Image

Request = tuple[str, str, dict[str, Any]]

_WORDS = ("invoice", "delivery", "late", "refund", "password", "login", "broken", "parcel",
          "charge", "account", "reset", "damaged", "order", "payment", "twice")  # fmt: skip


def _b64_png(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def valid_image(rng: random.Random, seed: int) -> Request:
    """A seeded 8 x 8 grey digit-like image for digits-image (its card resizes and crops)."""
    pixels = np.random.default_rng(seed).integers(0, 256, size=(40, 40), dtype=np.uint8)
    body = {"inputs": [{"b64": _b64_png(Image.fromarray(pixels, mode="L"))}],
            "n_samples": 30, "seed": seed}  # fmt: skip
    return "POST", "/v1/models/digits-image/predict", {"json": body}


def valid_text(rng: random.Random, seed: int) -> Request:
    """A seeded ticket for ticket-triage: a few vocabulary words, sometimes a long batch."""
    texts = [" ".join(rng.choice(_WORDS) for _ in range(rng.randint(3, 40)))
             for _ in range(rng.choice((1, 1, 1, 32)))]  # fmt: skip
    body = {"inputs": texts, "n_samples": 20, "seed": seed}
    return "POST", "/v1/models/ticket-triage/predict", {"json": body}


def valid_rank(rng: random.Random, seed: int) -> Request:
    """A seeded rank request on digits-mlp: bald or a small BatchBALD selection."""
    rows = [[float((seed * 7 + i * k) % 17) for k in range(64)] for i in range(40)]
    body = {"inputs": rows, "k": 4, "strategy": rng.choice(("bald", "batchbald")),
            "n_samples": 20, "seed": seed}  # fmt: skip
    return "POST", "/v1/models/digits-mlp/rank", {"json": body}


@cache
def _large_noise_png() -> str:
    pixels = np.random.default_rng(0).integers(0, 256, size=(2048, 2048), dtype=np.uint8)
    return _b64_png(Image.fromarray(pixels, mode="L"))


def large_image_request() -> Request:
    """A valid 2048 x 2048 noise PNG (about 4 MB): a long decode within every limit."""
    body = {"inputs": [{"b64": _large_noise_png()}], "n_samples": 10}
    return "POST", "/v1/models/digits-image/predict", {"json": body}


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _crafted() -> list[Request]:
    predict = "/v1/models/digits-image/predict"
    buffer = io.BytesIO()
    Image.new("L", (64, 64), 90).save(buffer, format="JPEG", progressive=True)
    jpeg = buffer.getvalue()
    last = jpeg.rindex(b"\xff\xda")
    scan_bomb = jpeg[:last] + jpeg[last:-2] * 3000 + b"\xff\xd9"
    thin = base64.b64decode(_b64_png(Image.new("L", (100_000, 1))))
    small = base64.b64decode(_b64_png(Image.new("L", (4, 4))))
    text_bomb = small[:33] + _chunk(b"zTXt", b"c\x00\x00" + zlib.compress(b"\0" * 8_000_000, 9))
    text_bomb += small[33:]
    boundary = "soak"
    truncated = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; '
        'filename="x.png"\r\nContent-Type: image/png\r\n\r\n'
    ).encode() + small[:20]
    rank = {"inputs": [[1.0] * 64] * 4, "k": 1000, "strategy": "batchbald",
            "candidates": 1000, "n_samples": 2000}  # fmt: skip
    as_b64 = [base64.b64encode(data).decode() for data in (scan_bomb, thin, text_bomb)]
    multipart = {"content-type": f"multipart/form-data; boundary={boundary}"}
    return [
        *(("POST", predict, {"json": {"inputs": [{"b64": data}]}}) for data in as_b64),
        ("POST", predict, {"content": truncated, "headers": multipart}),
        ("POST", "/v1/models/digits-mlp/rank", {"json": rank}),
    ]  # fmt: skip


CRAFTED_IMAGES = _crafted()
"""Image bombs (scans, a resize blow-up, a compressed chunk), a truncated upload, a rank past
the work limit."""
