"""Images in over HTTP: v1 base64 JSON, multipart files, v2 BYTES; bad images are 4xx."""

from __future__ import annotations

import base64
import io
import json
import shutil
import struct
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.config import load_settings
from app.engine.images import preprocess, to_channels
from app.main import create_app
from app.registry.card import read_card
from tests.support import BUNDLED_MODELS, REPO_ROOT

MODEL = "digits-image"
PREDICT = f"/v1/models/{MODEL}/predict"
INFER = f"/v2/models/{MODEL}/infer"
PICTURES = REPO_ROOT / "docs" / "images"
OPTIONS = {"n_samples": 30, "seed": 7}


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The image demo and one float-row model (loading every bundled model costs time)."""
    root = tmp_path_factory.mktemp("models")
    for name in (MODEL, "digits-mlp"):
        shutil.copytree(BUNDLED_MODELS / name, root / name)
    return root


@pytest.fixture(scope="module")
def client(models_dir: Path) -> Iterator[TestClient]:
    """One server for the module, with a small pixel limit (10,000) to test it."""
    app = create_app(load_settings(models_dir=models_dir, max_image_pixels=10_000))
    with TestClient(app, raise_server_exceptions=False) as started:
        yield started


def picture(name: str) -> bytes:
    return (PICTURES / name).read_bytes()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def means(response: Any) -> list[list[float]]:
    assert response.status_code == 200, response.text
    return [row["mean"] for row in response.json()["predictions"]]


def test_b64_json_equals_the_preprocessed_float_rows(client: TestClient) -> None:
    data = [picture("digit-3.png"), picture("digit-7.png")]
    spec = read_card(BUNDLED_MODELS / MODEL).input
    rows = [
        preprocess(to_channels(Image.open(io.BytesIO(d)), 1, "x"), spec.preprocessing()).tolist()  # type: ignore[union-attr]
        for d in data
    ]
    as_images = client.post(PREDICT, json={"inputs": [{"b64": b64(d)} for d in data], **OPTIONS})
    as_floats = client.post(PREDICT, json={"inputs": rows, **OPTIONS})
    assert means(as_images) == means(as_floats)
    assert [row["label"] for row in as_images.json()["predictions"]] == ["3", "7"]


def test_multipart_files_with_options_as_form_fields(client: TestClient) -> None:
    data = [picture("digit-0.png"), picture("digit-7.png")]
    files = [("image", (f"{i}.png", d, "image/png")) for i, d in enumerate(data)]
    form = {key: str(value) for key, value in OPTIONS.items()}
    as_form = client.post(PREDICT, files=files, data=form)
    as_json = client.post(PREDICT, json={"inputs": [{"b64": b64(d)} for d in data], **OPTIONS})
    assert means(as_form) == means(as_json)
    assert as_form.json()["n_samples"] == 30 and as_form.json()["seed"] == 7


def test_a_thin_image_a_resize_would_blow_up_is_refused_from_its_header(
    client: TestClient,
) -> None:
    # 1000 x 1 (a few hundred bytes): the card resizes the shorter side to 32, which would
    # make 32000 x 32 pixels; refused before anything is allocated.
    thin = png(Image.new("L", (1000, 1)))
    response = client.post(PREDICT, json={"inputs": [{"b64": b64(thin)}], **OPTIONS})
    assert response.status_code == 422
    assert response.json()["error"] == (
        "inputs[0]: is 1000x1: resized for this model it would be 1024000 pixels, more than "
        "the limit of 10000 (max_image_pixels)"
    )


def test_a_jpeg_repeating_its_scans_is_refused_from_its_markers(client: TestClient) -> None:
    buffer = io.BytesIO()
    Image.new("L", (32, 32), 90).save(buffer, format="JPEG", progressive=True)
    jpeg = buffer.getvalue()
    last = jpeg.rindex(b"\xff\xda")
    crafted = jpeg[:last] + jpeg[last:-2] * 2000 + b"\xff\xd9"
    response = client.post(PREDICT, json={"inputs": [{"b64": b64(crafted)}], **OPTIONS})
    assert response.status_code == 422
    assert "scans, more than the limit of 100" in response.json()["error"]


def test_a_truncated_multipart_body_is_refused_as_truncated(client: TestClient) -> None:
    boundary = "mcdrop-test-boundary"
    whole = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="0.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        + picture("digit-0.png")
        + f"\r\n--{boundary}--\r\n".encode()
    )
    headers = {"content-type": f"multipart/form-data; boundary={boundary}"}
    assert client.post(PREDICT, content=whole, headers=headers).status_code == 200
    cut = client.post(PREDICT, content=whole[: len(whole) // 2], headers=headers)
    assert cut.status_code == 422
    assert cut.json()["error"] == (
        "body: the multipart body is truncated: it ends before its closing boundary"
    )


def test_v2_bytes_as_base64_json_and_as_binary_data(client: TestClient) -> None:
    data = [picture("digit-3.png"), picture("noise.png")]
    parameters = {"n_samples": 30, "seed": 7}
    tensor = {"name": "input", "datatype": "BYTES", "shape": [2], "data": [b64(d) for d in data]}
    as_json = client.post(INFER, json={"inputs": [tensor], "parameters": parameters})
    assert as_json.status_code == 200, as_json.text
    raw = b"".join(struct.pack("<I", len(d)) + d for d in data)
    header = {
        "inputs": [
            {"name": "input", "datatype": "BYTES", "shape": [2, 1]}
            | {"parameters": {"binary_data_size": len(raw)}}
        ],
        "parameters": parameters,
    }
    head = json.dumps(header).encode()
    as_binary = client.post(
        INFER,
        content=head + raw,
        headers={
            "Inference-Header-Content-Length": str(len(head)),
            "content-type": "application/octet-stream",
        },
    )
    assert as_binary.status_code == 200, as_binary.text
    assert as_binary.json()["outputs"] == as_json.json()["outputs"]
    v1 = client.post(PREDICT, json={"inputs": [{"b64": b64(d)} for d in data], **OPTIONS})
    mean = next(o for o in as_json.json()["outputs"] if o["name"] == "mean")
    assert np.allclose(np.array(mean["data"]).reshape(2, 10), means(v1), atol=1e-6)


def test_v2_metadata_says_the_input_is_encoded_images(client: TestClient) -> None:
    (tensor,) = client.get(f"/v2/models/{MODEL}").json()["inputs"]
    assert tensor["datatype"] == "BYTES" and tensor["shape"] == [-1]
    assert tensor["parameters"]["content_type"] == "image"
    assert "centre crop 32x32" in tensor["parameters"]["preprocessing"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"inputs": [{"b64": b64(b"GIF89a junk")}]}, "inputs[0]: is not a PNG, JPEG, WEBP image"),
        ({"inputs": [{"b64": "%%%"}]}, "inputs[0]: is not a PNG, JPEG, WEBP image"),
        (
            {"inputs": [{"b64": b64(png(Image.new("RGB", (32, 32), (200, 10, 10))))}]},
            "inputs[0]: has 3 colour channels (RGB), but the model takes 1 (grey) channel",
        ),
        ({"inputs": [{"b64": b64(png(Image.new("L", (200, 100))))}]}, "20000 pixels, more than"),
        ({"inputs": [[[[0.0] * 32] * 32], {"b64": "AA=="}]}, "inputs[0]: is not an image, but"),
    ],
)
def test_bad_images_are_422_naming_the_input(
    client: TestClient, body: dict[str, Any], message: str
) -> None:
    response = client.post(PREDICT, json=body)
    assert response.status_code == 422
    assert message in response.json()["error"]


def test_bad_forms_and_bad_v2_bytes_are_4xx(client: TestClient) -> None:
    files = [("image", ("a.png", picture("digit-0.png"), "image/png"))]
    unknown = client.post(PREDICT, files=files, data={"colour": "red"})
    assert unknown.status_code == 422 and "colour: unexpected form field" in unknown.text
    no_image = client.post(PREDICT, data={"n_samples": "5"}, files=[("x", ("a", b"", "a"))])
    assert no_image.status_code == 422
    bad_option = client.post(PREDICT, files=files, data={"n_samples": "many"})
    assert bad_option.status_code == 422 and "n_samples" in bad_option.text
    corrupt = client.post(PREDICT, files=[("image", ("a.png", b"\x89PNG\r\n", "image/png"))])
    assert corrupt.status_code == 422 and "inputs[0]" in corrupt.json()["error"]
    not_images = client.post("/v1/models/digits-mlp/predict", files=files)
    assert not_images.status_code == 422 and "takes float rows, not images" in not_images.text
    tensor = {"name": "input", "datatype": "BYTES", "shape": [1], "data": [b64(b"junk")]}
    v2 = client.post(INFER, json={"inputs": [tensor]})
    assert v2.status_code == 400 and "inputs[0]: is not a PNG" in v2.json()["error"]
    short = {"name": "input", "datatype": "BYTES", "shape": [2], "data": ["AA=="]}
    assert client.post(INFER, json={"inputs": [short]}).status_code == 400


def test_ood_images_get_more_mutual_information_than_digits(client: TestClient) -> None:
    names = ["digit-0.png", "digit-3.png", "digit-7.png", "letter-a.png", "noise.png"]
    files = [("image", (name, picture(name), "image/png")) for name in names]
    response = client.post(PREDICT, files=files, data={"n_samples": "200", "seed": "0"})
    rows = response.json()["predictions"]
    digits, ood = rows[:3], rows[3:]
    assert [row["label"] for row in digits] == ["0", "3", "7"]
    assert min(row["mutual_information"] for row in ood) > max(
        row["mutual_information"] for row in digits
    )


def test_a_model_folder_without_pillow_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, client_for: Callable[..., TestClient], models_dir: Path
) -> None:
    monkeypatch.setitem(sys.modules, "PIL.Image", None)
    started = client_for(models_dir)
    listed = {m["name"]: m for m in started.get("/v1/models").json()["models"]}
    assert listed["digits-mlp"]["ready"] is True
    assert listed[MODEL]["ready"] is False
    assert listed[MODEL]["error"] == (
        f"model '{MODEL}': image models need Pillow: pip install \"mcdrop[vision]\""
    )
    assert started.post("/v1/models/digits-mlp/predict", json={"inputs": [[0.0] * 64]}).is_success
