"""DICOM and NIfTI over HTTP (v1 b64, multipart, v2 BYTES) to an image model whose card takes
them; patient data in a file never reaches a response, a log line or an error."""

from __future__ import annotations

import base64
import io
import logging
import shutil
from collections.abc import Iterator

import numpy as np
import pytest
import yaml
from fastapi.testclient import TestClient
from PIL import Image

from app.config import load_settings
from app.main import create_app
from tests.scans import SECRETS, dicom_file, nifti_file
from tests.support import BUNDLED_MODELS, REPO_ROOT

MODEL = "digits-image"
PREDICT = f"/v1/models/{MODEL}/predict"
INFER = f"/v2/models/{MODEL}/infer"
OPTIONS = {"n_samples": 20, "seed": 3}
DIGIT = REPO_ROOT / "docs" / "images" / "digit-3.png"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """digits-image with ``formats: [png, dicom, nifti]`` and the window that maps 8-bit
    stored values x to x / 255 (so a scan and a PNG of the same pixels answer alike)."""
    root = tmp_path_factory.mktemp("models")
    folder = shutil.copytree(BUNDLED_MODELS / MODEL, root / MODEL)
    card = yaml.safe_load((folder / "model.yaml").read_text())
    card["input"] |= {"formats": ["png", "dicom", "nifti"], "window": {"center": 128, "width": 256}}
    (folder / "model.yaml").write_text(yaml.safe_dump(card))
    app = create_app(load_settings(models_dir=root, max_image_pixels=10_000))
    with TestClient(app, raise_server_exceptions=False) as started:
        yield started


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _digit() -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(DIGIT.read_bytes())).convert("L"))


def _means(response: object) -> np.ndarray:
    assert response.status_code == 200, response.text  # type: ignore[attr-defined]
    return np.array([row["mean"] for row in response.json()["predictions"]])  # type: ignore[attr-defined]


def test_a_dicom_a_nifti_and_the_png_of_one_digit_answer_alike(client: TestClient) -> None:
    pixels = _digit()
    files = [DIGIT.read_bytes(), dicom_file(pixels.astype(np.uint16)), nifti_file(pixels.T)]
    answer = _means(
        client.post(PREDICT, json={"inputs": [{"b64": _b64(f)} for f in files]} | OPTIONS)
    )
    assert np.allclose(answer[1], answer[0], atol=1e-5) and np.allclose(
        answer[2], answer[0], atol=1e-5
    )
    uploads = [("image", (f"{i}.dcm", f, "application/dicom")) for i, f in enumerate(files)]
    form = client.post(PREDICT, files=uploads, data={k: str(v) for k, v in OPTIONS.items()})
    assert np.array_equal(_means(form), answer)
    tensor = {"name": "input", "datatype": "BYTES", "shape": [3], "data": [_b64(f) for f in files]}
    v2 = client.post(INFER, json={"inputs": [tensor], "parameters": OPTIONS})
    assert v2.status_code == 200, v2.text
    mean = next(o for o in v2.json()["outputs"] if o["name"] == "mean")
    assert np.allclose(np.reshape(mean["data"], (3, 10)), answer, atol=1e-6)


@pytest.mark.parametrize(
    ("scan", "message"),
    [
        (
            lambda: dicom_file(np.stack([_digit()] * 2)),
            "has 2 frames; the model card's input.frame",
        ),
        (lambda: dicom_file(_digit())[:-10], "has pixel data that cannot be decoded"),
        (lambda: dicom_file(np.zeros((200, 100))), "20000 pixels, more than the limit of 10000"),
        (lambda: dicom_file(_digit(), syntax="1.2.840.10008.1.2.4.80"), "JPEG-LS Lossless"),
        (lambda: nifti_file(np.zeros((32, 32, 3))), "volume of 3 slices"),
    ],
)
def test_bad_scans_are_422_without_patient_data(
    client: TestClient, caplog: pytest.LogCaptureFixture, scan: object, message: str
) -> None:
    caplog.set_level(logging.DEBUG)
    response = client.post(PREDICT, json={"inputs": [{"b64": _b64(scan())}]} | OPTIONS)  # type: ignore[operator]
    assert response.status_code == 422 and message in response.json()["error"], response.text
    assert response.json()["error"].startswith("inputs[0]: ")
    _assert_no_patient_data(response.text, caplog)


def test_served_scans_leave_no_patient_data_anywhere(
    client: TestClient, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    scan = dicom_file(_digit().astype(np.uint16), slope=1, intercept=0, window=(100, 50))
    texts = [client.post(PREDICT, json={"inputs": [{"b64": _b64(scan)}]} | OPTIONS).text]
    tensor = {"name": "input", "datatype": "BYTES", "shape": [1], "data": [_b64(scan)]}
    texts.append(client.post(INFER, json={"inputs": [tensor], "parameters": OPTIONS}).text)
    texts.append(client.get(f"/v1/models/{MODEL}").text)
    out, err = capfd.readouterr()
    _assert_no_patient_data("\n".join([*texts, out, err]), caplog)
    assert "(PNG, DICOM or NIfTI)" in client.get(f"/v1/models/{MODEL}").json()["input"]["summary"]
    (v2_input,) = client.get(f"/v2/models/{MODEL}").json()["inputs"]
    assert v2_input["parameters"]["formats"] == ["png", "dicom", "nifti"]


def _assert_no_patient_data(text: str, caplog: pytest.LogCaptureFixture) -> None:
    logged = "\n".join(record.getMessage() for record in caplog.records) + caplog.text
    for secret in SECRETS:
        assert secret not in text and secret not in logged, secret


def test_the_patient_data_check_catches_a_leak(
    client: TestClient, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Power check: a decoder that logged the patient's name would fail the checks above."""
    from app.engine import dicom

    read = dicom._read

    def leaky(data: bytes, field: str) -> object:
        dataset = read(data, field)
        logging.getLogger("app.engine.dicom").warning("reading %s", dataset.PatientName)
        return dataset

    monkeypatch.setattr(dicom, "_read", leaky)
    caplog.set_level(logging.DEBUG)
    scan = dicom_file(_digit().astype(np.uint16))
    response = client.post(PREDICT, json={"inputs": [{"b64": _b64(scan)}]} | OPTIONS)
    assert response.status_code == 200
    with pytest.raises(AssertionError):
        _assert_no_patient_data(response.text, caplog)
