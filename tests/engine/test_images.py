"""Image decoding and preprocessing against hand-computed answers, and hostile images."""

from __future__ import annotations

import base64
import io
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from app.engine.images import (
    MAX_JPEG_SCANS,
    ImagePreprocessing,
    InvalidImageError,
    decode_image,
    encoded_image,
    images_to_tensor,
    preprocess,
    to_channels,
)
from app.errors import InvalidInputError

LIMIT = 1_000_000


def encode(image: Image.Image, fmt: str = "PNG", **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def ramp_image() -> Image.Image:
    """4 rows x 8 columns, every row the same: column values below (multiples of 8, so that
    Pillow's bilinear 2x reduction gives exact integers)."""
    columns = [0, 80, 16, 240, 32, 160, 8, 96]
    return Image.fromarray(np.array([columns] * 4, dtype=np.uint8), mode="L")


def test_resize_crop_scale_normalise_match_the_hand_computed_answer() -> None:
    # Shorter side 4 -> 2 makes the image 2 x 4. Antialiased bilinear at scale 2 weighs the
    # four nearest columns 1/8, 3/8, 3/8, 1/8; the central 2x2 crop keeps output columns 1, 2:
    #   column 1 = (80 + 3*16 + 3*240 + 32) / 8 = 110
    #   column 2 = (240 + 3*32 + 3*160 + 8) / 8 = 103
    spec = ImagePreprocessing(channels=1, size=(2, 2), resize=2, mean=(0.5,), std=(0.25,))
    row = preprocess(ramp_image(), spec)
    expected = torch.tensor([110.0, 103.0]) / 255.0
    expected = ((expected - 0.5) / 0.25).repeat(2, 1).unsqueeze(0)
    assert row.shape == (1, 2, 2)
    assert torch.allclose(row, expected, atol=1e-6)


def test_grey_becomes_rgb_with_each_channels_own_mean_and_std() -> None:
    # No resize (the crop is the central 2x2 of columns 3..4): pixels 240 and 32.
    spec = ImagePreprocessing(channels=3, size=(2, 2), mean=(0.0, 0.5, 1.0), std=(1.0, 0.5, 0.25))
    image = to_channels(ramp_image(), 3, "x")
    row = preprocess(image, spec)
    pixels = torch.tensor([240.0, 32.0]) / 255.0
    for channel, (mean, std) in enumerate(zip(spec.mean, spec.std, strict=True)):
        assert torch.allclose(row[channel], ((pixels - mean) / std).repeat(2, 1), atol=1e-6)


def test_crop_offsets_and_a_plain_resize_without_crop() -> None:
    values = np.arange(25, dtype=np.uint8).reshape(5, 5) * 10
    image = Image.fromarray(values, mode="L")
    cropped = preprocess(image, ImagePreprocessing(channels=1, size=(3, 3)))
    assert torch.equal(cropped[0] * 255, torch.from_numpy(values[1:4, 1:4]).float())
    # center_crop false: straight to the size; a constant image stays constant.
    flat = Image.new("L", (7, 3), 51)
    stretched = preprocess(flat, ImagePreprocessing(channels=1, size=(2, 4), center_crop=False))
    assert stretched.shape == (1, 2, 4) and torch.allclose(stretched, torch.full((1, 2, 4), 0.2))


def test_a_landscape_image_is_resized_on_its_shorter_side() -> None:
    image = Image.new("RGB", (40, 20), (255, 0, 0))
    row = preprocess(image, ImagePreprocessing(channels=3, size=(10, 10), resize=10))
    assert row.shape == (3, 10, 10)
    assert torch.equal(row[0], torch.ones(10, 10)) and torch.equal(row[1], torch.zeros(10, 10))


@pytest.mark.parametrize(
    ("fmt", "options"), [("PNG", {}), ("JPEG", {"quality": 95}), ("WEBP", {"lossless": True})]
)
def test_png_jpeg_and_webp_decode(fmt: str, options: dict[str, object]) -> None:
    image = Image.new("RGB", (6, 4), (10, 200, 30))
    decoded = decode_image(encode(image, fmt, **options), LIMIT, "inputs[0]")
    assert decoded.size == (6, 4)
    assert np.abs(np.asarray(decoded.convert("RGB"), dtype=int) - [10, 200, 30]).max() <= 3


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(side: int) -> bytes:
    """A PNG header claiming side x side grey pixels, with one tiny compressed row."""
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    row = zlib.compress(b"\x00" * (side + 1))
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", row)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "is not a PNG, JPEG, WEBP image"),
        (b"not an image at all", "is not a PNG, JPEG, WEBP image"),
        (encode(Image.new("L", (4, 4)), "GIF"), "is not a PNG, JPEG, WEBP image"),
        (encode(Image.new("L", (64, 64)))[:60], "corrupt PNG image"),
        (bomb_png(200_000), "has more pixels than the limit of 1000000 (max_image_pixels)"),
        (bomb_png(5_000), "5000x5000 = 25000000 pixels, more than the limit of 1000000"),
        (encode(Image.new("L", (1001, 1000))), "1001x1000 = 1001000 pixels"),
    ],
)
def test_bad_images_are_refused_naming_the_input(data: bytes, message: str) -> None:
    with pytest.raises(InvalidImageError) as caught:
        decode_image(data, LIMIT, "inputs[3]")
    assert caught.value.status_code == 422
    assert caught.value.message.startswith("inputs[3]: ")
    assert message in caught.value.message


def test_channel_conversion_and_the_wrong_channel_count() -> None:
    grey_as_rgb = Image.merge("RGB", [Image.new("L", (3, 3), 77)] * 3)
    assert np.asarray(to_channels(grey_as_rgb, 1, "x")).tolist() == [[77] * 3] * 3
    rgba = Image.new("RGBA", (2, 2), (1, 2, 3, 0))
    assert to_channels(rgba, 3, "x").getpixel((0, 0)) == (1, 2, 3)
    with pytest.raises(InvalidImageError, match=r"inputs\[1\]: has 3 colour channels \(RGB\)"):
        to_channels(Image.new("RGB", (2, 2), (1, 2, 3)), 1, "inputs[1]")
    with pytest.raises(InvalidImageError, match="pixel mode I"):
        to_channels(Image.new("I", (2, 2)), 1, "x")  # 32-bit integers: no rule for them
    with pytest.raises(InvalidImageError, match="pixel mode F"):
        to_channels(Image.new("F", (2, 2)), 1, "x")


def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("channels", [1, 3])
def test_sixteen_bit_grey_and_colour_keep_their_top_eight_bits(channels: int) -> None:
    # One rule for both: Pillow reads a 16-bit RGB PNG as its top 8 bits; grey does the same.
    values = np.array([[0, 255, 256], [4660, 65280, 65535]], dtype=np.uint16)
    grey = decode_image(_png_bytes(Image.fromarray(values)), 100, "x")
    assert grey.mode.startswith("I;16")
    expected = (values >> 8).astype(np.uint8)
    converted = np.asarray(to_channels(grey, channels, "x"))
    assert (converted if channels == 1 else converted[..., 0]).tolist() == expected.tolist()
    rgb16 = _sixteen_bit_rgb_png(values)
    colour = np.asarray(to_channels(decode_image(rgb16, 100, "x"), 3, "x"))
    assert colour[..., 0].tolist() == expected.tolist()


def _sixteen_bit_rgb_png(values: np.ndarray) -> bytes:
    """A 16-bit-per-channel RGB PNG written by hand (Pillow cannot save one)."""
    height, width = values.shape
    raw = b"".join(b"\x00" + b"".join(int(v).to_bytes(2, "big") * 3 for v in row) for row in values)
    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    body = _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", zlib.compress(raw))
    return b"\x89PNG\r\n\x1a\n" + body + _png_chunk(b"IEND", b"")


@pytest.mark.parametrize(
    ("chunk", "payload"),
    [(b"zTXt", b"comment\x00\x00"), (b"iCCP", b"profile\x00\x00")],
)
def test_a_compressed_chunk_bomb_is_refused_as_what_it_is(chunk: bytes, payload: bytes) -> None:
    # 64 MB of zeros compress to ~64 KB: Pillow refuses to expand a text or profile chunk past
    # its limit; the answer says so instead of "is not an image".
    bomb = _png_chunk(chunk, payload + zlib.compress(b"\x00" * 64_000_000, 9))
    png = encode(Image.new("L", (4, 4)))
    data = png[:33] + bomb + png[33:]  # after the signature and IHDR
    with pytest.raises(InvalidImageError, match="compressed text or colour-profile chunk"):
        decode_image(data, LIMIT, "inputs[0]")


def _repeat_last_scan(jpeg: bytes, times: int) -> bytes:
    """A progressive JPEG with its last scan repeated: every repeat is a pass over the image."""
    last = jpeg.rindex(b"\xff\xda")
    return jpeg[:last] + jpeg[last:-2] * times + b"\xff\xd9"


def test_a_jpeg_of_too_many_scans_is_refused_from_its_markers() -> None:
    progressive = encode(Image.new("L", (64, 64), 128), "JPEG", progressive=True)
    scans = progressive.count(b"\xff\xda")
    assert 1 < scans <= MAX_JPEG_SCANS
    assert decode_image(progressive, LIMIT, "x").size == (64, 64)
    crafted = _repeat_last_scan(progressive, MAX_JPEG_SCANS + 1)
    with pytest.raises(InvalidImageError, match=rf"is a JPEG of {scans + MAX_JPEG_SCANS} scans"):
        decode_image(crafted, LIMIT, "inputs[0]")


def test_an_image_a_resize_would_blow_up_is_refused_before_decoding() -> None:
    # 1000 x 1 with the shorter side resized to 32 would be 32000 x 32 = 1,024,000 pixels.
    spec = ImagePreprocessing(channels=1, size=(32, 32), resize=32)
    assert spec.largest_pixels(1000, 1) == 32_000 * 32
    thin = encode(Image.new("L", (1000, 1)))
    with pytest.raises(InvalidImageError, match="resized for this model it would be 1024000"):
        decode_image(thin, LIMIT, "inputs[0]", spec)
    assert decode_image(thin, 2_000_000, "inputs[0]", spec).size == (1000, 1)


def test_encoded_image_reads_bytes_and_b64_objects_only() -> None:
    assert encoded_image(b"abc") == b"abc"
    assert encoded_image({"b64": base64.b64encode(b"abc").decode()}) == b"abc"
    assert encoded_image({"b64": "not base64!"}) == b""
    assert encoded_image({"b64": 3}) == b""
    assert encoded_image([1.0, 2.0]) is None
    assert encoded_image({"b64": "YQ==", "other": 1}) is None


def test_images_to_tensor_stacks_rows_and_refuses_mixes() -> None:
    spec = ImagePreprocessing(channels=1, size=(4, 8))
    png = encode(ramp_image())
    batch = images_to_tensor([png, {"b64": base64.b64encode(png).decode()}], spec, 4, LIMIT)
    assert batch is not None and batch.shape == (2, 1, 4, 8) and batch.dtype == torch.float64
    assert torch.equal(batch[0], batch[1])
    assert images_to_tensor([[0.0] * 3], spec, 4, LIMIT) is None
    with pytest.raises(InvalidInputError, match=r"inputs\[1\]: is not an image, but other rows"):
        images_to_tensor([png, [0.0]], spec, 4, LIMIT)
    with pytest.raises(InvalidInputError, match="takes float rows, not images"):
        images_to_tensor([png], None, 4, LIMIT)
    with pytest.raises(InvalidInputError, match="3 rows, more than the limit of 2"):
        images_to_tensor([png] * 3, spec, 2, LIMIT)
    small = encode(Image.new("L", (2, 2)))
    with pytest.raises(InvalidImageError, match=r"inputs\[0\]: cannot be preprocessed: .*crop"):
        images_to_tensor([small], spec, 4, LIMIT)
