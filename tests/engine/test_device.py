from __future__ import annotations

import pytest
import torch
from sklearn.datasets import load_digits

from app.engine.device import resolve_device, resolve_dtype
from app.engine.predictor import PredictionRequest
from app.engine.stats import ClassificationStats
from app.registry.loading import load_model_folder
from app.registry.served import LoadOptions
from tests.support import BUNDLED_MODELS

GPU = torch.cuda.is_available()


def test_resolve_device_and_dtype() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cuda" if GPU else "cpu")
    if not GPU:
        with pytest.raises(RuntimeError, match="no CUDA device"):
            resolve_device("cuda")
    assert resolve_dtype("bfloat16") is torch.bfloat16
    with pytest.raises(ValueError, match="unknown dtype"):
        resolve_dtype("int8")


def _classes(options: LoadOptions, name: str = "digits-cnn") -> tuple[list[int], torch.Tensor]:
    model = load_model_folder(BUNDLED_MODELS / name, options)
    digits = load_digits()
    x = torch.tensor(digits.images[:40], dtype=torch.float64).unsqueeze(1)
    prediction = model.predictor.predict(PredictionRequest(x, 50, 0.9, seed=0))
    assert isinstance(prediction.stats, ClassificationStats)
    return prediction.stats.predicted_class.tolist(), prediction.stats.mean


def test_bfloat16_on_cpu_agrees_with_float32() -> None:
    full, full_mean = _classes(LoadOptions())
    half, half_mean = _classes(LoadOptions(dtype=torch.bfloat16))
    assert half_mean.dtype == torch.float32  # statistics are computed in float32
    assert sum(a == b for a, b in zip(full, half, strict=True)) >= 39
    assert (full_mean - half_mean).abs().max() < 0.1


@pytest.mark.gpu
@pytest.mark.skipif(not GPU, reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_cuda_sampling_matches_cpu_predictions(dtype: torch.dtype) -> None:
    cpu, _ = _classes(LoadOptions())
    gpu, mean = _classes(LoadOptions(device="cuda", dtype=dtype))
    assert sum(a == b for a, b in zip(cpu, gpu, strict=True)) >= 39
    assert mean.device.type == "cpu"
