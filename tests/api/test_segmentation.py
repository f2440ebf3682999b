"""Segmentation over HTTP: v1 rows with areas and maps (JSON, PNG, .npy, none), v2 tensors,
per-image Dice from /evaluate, and the worst-case memory refused before sampling."""

from __future__ import annotations

import base64
import io
import math
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tests.segmentation_models import SIZE, images, write_unet_folder
from tests.support import write_model


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from app.config import load_settings
    from app.main import create_app

    root = tmp_path_factory.mktemp("models")
    write_unet_folder(root, "unet", {"p": 0.3}, labels=["background", "lesion"])
    write_model(root, "tiny")
    settings = load_settings(models_dir=root, max_dense_values=2_000_000)
    with TestClient(create_app(settings)) as started:
        yield started


def _predict(client: TestClient, **options: Any) -> Any:
    body = {"inputs": images(2).tolist(), "n_samples": 24, "seed": 4, **options}
    response = client.post("/v1/models/unet/predict", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def _decoded(text: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(text))))


def test_v1_rows_give_areas_with_intervals_and_json_maps(client: TestClient) -> None:
    answer = _predict(client)
    assert answer["task"] == "segmentation" and answer["n_samples"] == 24
    row = answer["predictions"][0]
    lesion = row["areas"][1]
    assert lesion["label"] == "lesion"
    assert lesion["lower"] <= lesion["mean"] <= lesion["upper"]
    assert sum(area["pixels"] for area in row["areas"]) == SIZE * SIZE
    mask = np.array(row["maps"]["mask"])
    assert mask.shape == (SIZE, SIZE) and int((mask == 1).sum()) == lesion["pixels"]
    mi = np.array(row["maps"]["mutual_information"])
    assert mi.mean() == pytest.approx(row["mean_mutual_information"], rel=1e-5)
    assert np.array(row["maps"]["mean"]).shape == (2, SIZE, SIZE)


def test_png_and_npy_maps_hold_the_json_numbers(client: TestClient) -> None:
    plain = _predict(client)["predictions"][0]["maps"]
    png = _predict(client, maps="png")["predictions"][0]["maps"]
    npy = _predict(client, maps="npy")["predictions"][0]["maps"]
    assert _decoded(png["mask"]).tolist() == plain["mask"]
    scale = png["scale"]["mutual_information"]
    assert scale == pytest.approx(math.log(2))
    from_png = _decoded(png["mutual_information"]).astype(np.float64) / 65535 * scale
    assert np.abs(from_png - np.array(plain["mutual_information"])).max() <= scale / 65535
    exact = np.load(io.BytesIO(base64.b64decode(npy["mean"])))
    assert exact.shape == (2, SIZE, SIZE)
    np.testing.assert_allclose(exact, np.array(plain["mean"]), rtol=1e-6)


def test_maps_none_gives_the_summaries_alone(client: TestClient) -> None:
    row = _predict(client, maps="none")["predictions"][0]
    assert "maps" not in row and row["areas"][1]["label"] == "lesion"


def test_v2_outputs_are_per_pixel_tensors_with_a_uint8_mask(client: TestClient) -> None:
    plain = _predict(client)["predictions"]
    body = {
        "inputs": [
            {
                "name": "input",
                "shape": [2, 1, SIZE, SIZE],
                "datatype": "FP32",
                "data": images(2).flatten().tolist(),
            }
        ],
        "parameters": {"n_samples": 24, "seed": 4},
    }
    response = client.post("/v2/models/unet/infer", json=body)
    assert response.status_code == 200, response.text
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    assert outputs["mask"]["datatype"] == "UINT8"
    assert outputs["mask"]["shape"] == [2, SIZE, SIZE]
    assert outputs["mean"]["shape"] == [2, 2, SIZE, SIZE]
    assert outputs["area_mean"]["data"][1] == pytest.approx(plain[0]["areas"][1]["mean"])
    assert outputs["mask"]["data"][:SIZE] == plain[0]["maps"]["mask"][0]


def test_evaluate_gives_per_image_dice(client: TestClient) -> None:
    answer = _predict(client)["predictions"]
    targets = [row["maps"]["mask"] for row in answer]  # the served masks themselves
    body = {"inputs": images(2).tolist(), "targets": targets, "n_samples": 24, "seed": 4}
    response = client.post("/v1/models/unet/evaluate", json=body)
    assert response.status_code == 200, response.text
    report = response.json()["segmentation"]
    assert [image["foreground_dice"] for image in report["images"]] == [1.0, 1.0]
    assert report["images"][0]["mean_mutual_information"] == pytest.approx(
        answer[0]["mean_mutual_information"], rel=1e-5
    )
    wrong = {**body, "targets": [targets[0], [[0, 1]]]}
    refused = client.post("/v1/models/unet/evaluate", json=wrong)
    assert refused.status_code == 422 and "targets[1]" in refused.json()["error"]


def test_a_request_over_the_memory_bound_is_refused_before_sampling(client: TestClient) -> None:
    body = {"inputs": images(40).tolist(), "n_samples": 24, "seed": 4}
    refused = client.post("/v1/models/unet/predict", json=body)
    assert refused.status_code == 422
    assert "max_dense_values" in refused.json()["error"]
    samples = {"inputs": images(2).tolist(), "n_samples": 1000, "return_samples": True}
    refused = client.post("/v1/models/unet/predict", json=samples)
    assert refused.status_code == 422 and "max_dense_values" in refused.json()["error"]


def test_the_client_reads_segmentation_rows(client: TestClient) -> None:
    from app.api.schemas import PredictResponse
    from app.tasks.segmentation import SegmentationRow

    parsed = PredictResponse.model_validate(_predict(client, maps="png"))
    assert isinstance(parsed.predictions[0], SegmentationRow)


def test_accept_png_gives_the_overlay_and_other_tasks_say_406(client: TestClient) -> None:
    body = {"inputs": images(2).tolist(), "n_samples": 24, "seed": 4}
    response = client.post(
        "/v1/models/unet/predict?opacity=1", json=body, headers={"Accept": "image/png"}
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    drawn = np.asarray(Image.open(io.BytesIO(response.content)))
    assert drawn.shape == (SIZE, 2 * SIZE + 4, 3)
    mask = np.array(_predict(client)["predictions"][0]["maps"]["mask"])
    from app.tasks.segmentation_overlay import CONTOUR_RGB, contour

    edge = contour(mask)
    assert edge.any() and (drawn[:SIZE, :SIZE][edge] == CONTOUR_RGB).all()
    bad = client.post(
        "/v1/models/unet/predict?opacity=2", json=body, headers={"Accept": "image/png"}
    )
    assert bad.status_code == 422
    tiny = client.post(
        "/v1/models/tiny/predict", json={"inputs": [[0.0, 1.0]]}, headers={"Accept": "image/png"}
    )
    assert tiny.status_code == 406
    assert "classification answer has no image/png form" in tiny.json()["error"]
    either = {"Accept": "application/json, image/png"}
    assert client.post("/v1/models/unet/predict", json=body, headers=either).json()["task"]


def test_v2_binary_outputs_carry_the_uint8_mask(client: TestClient) -> None:
    plain = _predict(client)["predictions"][0]["maps"]["mask"]
    body = {
        "inputs": [
            {
                "name": "input",
                "shape": [2, 1, SIZE, SIZE],
                "datatype": "FP32",
                "data": images(2).flatten().tolist(),
            }
        ],
        "outputs": [{"name": "mask", "parameters": {"binary_data": True}}],
        "parameters": {"n_samples": 24, "seed": 4},
    }
    response = client.post("/v2/models/unet/infer", json=body)
    assert response.status_code == 200, response.text
    header_length = int(response.headers["inference-header-content-length"])
    tail = response.content[header_length:]
    assert len(tail) == 2 * SIZE * SIZE
    mask = np.frombuffer(tail, dtype=np.uint8).reshape(2, SIZE, SIZE)
    assert mask[0].tolist() == plain
