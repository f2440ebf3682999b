from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import save_file

from app.engine.adaptive import mc_standard_error, next_sample_count
from app.engine.predictor import PredictionRequest
from app.registry.loading import load_model_folder
from tests.support import BUNDLED_MODELS


def test_standard_error_is_the_largest_std_over_sqrt_n() -> None:
    values = torch.tensor([[[0.0, 1.0]], [[2.0, 1.0]], [[4.0, 1.0]], [[6.0, 1.0]]])  # (4, 1, 2)
    # unbiased std of 0, 2, 4, 6 is sqrt(20/3); divided by sqrt(4)
    assert mc_standard_error(values) == pytest.approx(math.sqrt(20 / 3) / 2)
    assert mc_standard_error(values[:1]) == math.inf


@pytest.mark.parametrize(
    ("n", "se", "tol", "cap", "expected"),
    [
        (32, 0.01, 0.01, 1000, 32),  # converged
        (32, 0.05, 0.01, 5000, 960),  # 32 * 25 * 1.2 = 960, a multiple of 16
        (32, 0.04, 0.01, 5000, 624),  # 32 * 16 * 1.2 = 614.4 -> aligned up to 624
        (32, 0.011, 0.01, 5000, 64),  # at least doubles
        (32, 0.05, 0.01, 500, 500),  # capped
        (500, 0.05, 0.01, 500, 500),  # at the cap: done
    ],
)
def test_next_sample_count(n: int, se: float, tol: float, cap: int, expected: int) -> None:
    assert next_sample_count(n, se, tol, cap) == expected


def test_adaptive_request_meets_its_tolerance_and_reports_n() -> None:
    model = load_model_folder(BUNDLED_MODELS / "diabetes-mlp")
    x = torch.zeros(2, 10)
    loose = model.predictor.predict(
        PredictionRequest(x, n_samples=2000, ci_level=0.9, seed=1, tolerance=2.0)
    )
    tight = model.predictor.predict(
        PredictionRequest(x, n_samples=2000, ci_level=0.9, seed=1, tolerance=0.05)
    )
    assert loose.converged and tight.converged
    assert loose.mc_standard_error <= 2.0 and tight.mc_standard_error <= 0.05
    assert 32 <= loose.n_samples < tight.n_samples <= 2000
    # the first samples of the adaptive run are the fixed-N run's samples (same seed)
    fixed = model.predictor.predict(
        PredictionRequest(x, n_samples=tight.n_samples, ci_level=0.9, seed=1, return_samples=True)
    )
    assert fixed.n_samples == tight.n_samples
    torch.testing.assert_close(fixed.stats.mean, tight.stats.mean, rtol=1e-6, atol=1e-6)


def test_adaptive_request_stops_at_the_cap_unconverged() -> None:
    model = load_model_folder(BUNDLED_MODELS / "diabetes-mlp")
    result = model.predictor.predict(
        PredictionRequest(torch.zeros(1, 10), n_samples=48, ci_level=0.9, seed=1, tolerance=1e-6)
    )
    assert result.n_samples == 48 and result.converged is False


_WIDE_NET = """
import torch
from torch import nn


class WideNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(2, 32)
        self.drop = nn.Dropout(0.5)
        self.mid = nn.Linear(32, 32)
        self.drop2 = nn.Dropout(0.2)
        self.out = nn.Linear(32, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.drop(torch.relu(self.inp(x)))
        return self.out(self.drop2(torch.relu(self.mid(h))))
"""


def _wide_folder(root: Path, kind: str) -> Path:
    """A two-dropout classifier as a python-file or TorchScript model folder."""
    folder = root / kind
    folder.mkdir()
    (folder / "net.py").write_text(_WIDE_NET)
    spec = importlib.util.spec_from_file_location("wide_net_for_tests", folder / "net.py")
    assert spec is not None and spec.loader is not None
    source = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(source)
    torch.manual_seed(4)
    net = source.WideNet().eval()
    card: dict[str, object] = {
        "name": f"wide-{kind}",
        "version": "1",
        "task": "classification",
        "input": {"shape": [2], "dtype": "float32"},
        "labels": ["a", "b"],
        "n_samples": {"default": 20, "max": 500},
    }
    if kind == "torchscript":
        torch.jit.save(torch.jit.script(net), str(folder / "model.ts"))
        card |= {"architecture": {"torchscript": "model.ts"}, "weights": {}}
    else:
        save_file(net.state_dict(), str(folder / "model.safetensors"))
        card |= {
            "architecture": {"file": "net.py", "class": "WideNet"},
            "weights": {"file": "model.safetensors"},
        }
    (folder / "model.yaml").write_text(yaml.safe_dump(card))
    return folder


@pytest.mark.parametrize("kind", ["bundled", "python-file", "torchscript"])
def test_adaptive_passes_are_distinct_and_equal_a_fixed_run(kind: str, tmp_path: Path) -> None:
    if kind == "bundled":
        model, x = load_model_folder(BUNDLED_MODELS / "digits-cnn"), torch.rand(20, 1, 8, 8)
    else:
        model, x = load_model_folder(_wide_folder(tmp_path, kind)), torch.randn(20, 2)
    adaptive = model.predictor.predict(
        PredictionRequest(x, 200, ci_level=0.9, seed=5, return_samples=True, tolerance=1e-9)
    )
    # rounds of 32, 64, 128 then the cap: each continues the run at a new first_sample
    assert adaptive.n_samples == 200 and adaptive.converged is False
    fixed = model.predictor.predict(
        PredictionRequest(x, 200, ci_level=0.9, seed=5, return_samples=True)
    )
    assert adaptive.samples is not None and fixed.samples is not None
    assert torch.equal(adaptive.samples, fixed.samples)
    assert torch.unique(adaptive.samples.flatten(1), dim=0).shape[0] == 200
