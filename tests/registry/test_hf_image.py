"""Hugging Face image classifiers: tiny random-weight folders built here, loaded offline."""

from __future__ import annotations

import base64
import io
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from app.config import load_settings
from app.engine.images import ImagePipeline
from app.engine.predictor import PredictionRequest
from app.errors import ModelLoadError
from app.inputs.image import ImageKind
from app.main import create_app
from app.registry.loading import load_model_folder
from app.registry.served import ServedModel
from tests.hf_images import write_hf_image_model

pytest.importorskip("transformers")


def _photo(seed: int = 0, size: tuple[int, int] = (48, 40)) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels, mode="RGB")


def _pipeline(model: ServedModel) -> ImagePipeline:
    assert isinstance(model.input_kind, ImageKind)
    return model.input_kind.pipeline


def _samples(model: ServedModel, rows: int = 2, n: int = 12, seed: int = 3) -> torch.Tensor:
    x = torch.stack([_pipeline(model)(_photo(i)) for i in range(rows)]).double()
    request = PredictionRequest(x, n, 0.95, seed=seed, return_samples=True)
    samples = model.predictor.predict(request).samples
    assert samples is not None
    return samples


@pytest.mark.parametrize("kind", ["mobilenet_v2", "efficientnet", "convnext", "vit"])
def test_supported_classifiers_load_and_sample(tmp_path: Path, kind: str) -> None:
    model = load_model_folder(write_hf_image_model(tmp_path, kind.replace("_", "-"), kind))
    assert model.card.input.shape == [3, 32, 32]
    assert model.card.labels == ["cat", "dog", "fox"]
    assert "ImageProcessorPil" in _pipeline(model).describe()
    first = _samples(model)
    assert first.shape == (12, 2, 3)
    assert float(first.std(0).max()) > 1e-4, "the passes must differ"
    assert torch.equal(first, _samples(model)), "same seed, same numbers"


def test_mobilenet_runs_its_backbone_once_per_image(tmp_path: Path) -> None:
    model = load_model_folder(write_hf_image_model(tmp_path, "m", "mobilenet_v2"))
    assert model.split.reason.startswith("Hugging Face split: mobilenet_v2 runs once per image")
    assert [layer.name for layer in model.dropout_layers] == ["dropout"]
    calls: list[int] = []
    backbone = model.module.get_submodule("model.mobilenet_v2")
    hook = backbone.register_forward_hook(lambda _m, _a, out: calls.append(len(out.pooler_output)))
    try:
        samples = _samples(model, rows=2, n=40)
    finally:
        hook.remove()
    assert calls == [2], "one backbone pass over the 2 images, not 40 x 2"
    assert samples.shape == (40, 2, 3) and float(samples.std(0).max()) > 1e-4


def test_efficientnet_head_mode_samples_only_the_classifier_dropout(tmp_path: Path) -> None:
    every = load_model_folder(write_hf_image_model(tmp_path, "e", "efficientnet"))
    assert len(every.dropout_layers) > 1
    assert every.split.reason == "Hugging Face model: every sample runs the whole model"
    head = load_model_folder(
        write_hf_image_model(tmp_path, "h", "efficientnet", card={"mc_dropout": "head"})
    )
    assert [layer.name for layer in head.dropout_layers] == ["dropout"]
    assert head.split.reason.startswith("Hugging Face split: efficientnet runs once per image")
    assert float(_samples(head).std(0).max()) > 1e-4


def test_vit_attention_dropout_alone_is_sampled(tmp_path: Path) -> None:
    folder = write_hf_image_model(tmp_path, "v", "vit", hidden_dropout_prob=0.0)
    model = load_model_folder(folder)
    active = {site.name for site in model.dropout_sites if site.p > 0}
    assert active == {"vit.layers.0.attention.dropout", "vit.layers.1.attention.dropout"}
    assert {s.role for s in model.dropout_sites if s.name in active} == {"attention"}
    assert float(_samples(model).std(0).max()) > 1e-4


def test_resnet_is_refused_with_how_to_add_a_head(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError) as caught:
        load_model_folder(write_hf_image_model(tmp_path, "r", "resnet"))
    message = caught.value.message
    assert "ResNetForImageClassification has no dropout" in message
    assert "Add a dropout head" in message and "MobileNetV2ForImageClassification" in message


def test_without_transformers_the_folder_names_the_vision_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = write_hf_image_model(tmp_path, "m", "mobilenet_v2")
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(
        ModelLoadError, match=r'needs transformers: .*pip install "mcdrop\[vision\]"'
    ):
        load_model_folder(folder)


def test_a_png_over_http_is_preprocessed_by_the_folders_processor(tmp_path: Path) -> None:
    folder = write_hf_image_model(tmp_path / "models", "mobilenet", "mobilenet_v2")
    model = load_model_folder(folder)
    photo = _photo(5, (60, 45))
    buffer = io.BytesIO()
    photo.save(buffer, format="PNG")
    rows = [_pipeline(model)(photo).tolist()]
    options = {"n_samples": 20, "seed": 1}
    app = create_app(load_settings(models_dir=tmp_path / "models"))
    with TestClient(app) as client:
        url = "/v1/models/mobilenet/predict"
        encoded = {"b64": base64.b64encode(buffer.getvalue()).decode()}
        as_png = client.post(url, json={"inputs": [encoded], **options})
        as_rows = client.post(url, json={"inputs": rows, **options})
        assert as_png.status_code == 200, as_png.text
        assert as_png.json()["predictions"] == as_rows.json()["predictions"]
        info = client.get("/v1/models/mobilenet").json()
        assert info["input_type"] == "image" and info["input_shape"] == [3, 32, 32]
        assert info["prefix_note"].startswith("Hugging Face split")


def test_scan_formats_are_refused_for_an_image_processor(tmp_path: Path) -> None:
    card = {"input": {"type": "image", "formats": ["png", "dicom"]}}
    folder = write_hf_image_model(tmp_path, "scans", "mobilenet_v2", card=card)
    with pytest.raises(ModelLoadError, match="DICOM and NIfTI inputs"):
        load_model_folder(folder)
