"""One regression row at N = 10,000 passes (Gal & Ghahramani's protocol) through HTTP.

A 6-50-1 MLP regression model served as TorchScript, timed side by side in one run (medians):
  forward     one forward of the 10,000 folded rows with dropout on (the baseline, ratio 1)
  sampling    the model's sampler: 10,000 passes of the row
  statistics  the regression statistics of those passes (mean, variances, CI, mixture PI)
  engine      Predictor.predict (sampling + statistics)
  response    building and serialising the v1 JSON response from the prediction
  http        POST /v1/models/{name}/predict end to end (uvicorn on localhost, keep-alive)

    python -m bench.regression_row [--repeats 15] [--threads 2]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import httpx
import torch
import yaml
from torch import nn

from app.api.native import predict_response
from app.engine.predictor import PredictionRequest
from app.engine.sampling import SampleJob
from app.registry.loading import load_model_folder
from app.registry.served import ServedModel
from bench.common import markdown_table, median_seconds

PASSES = 10_000


def write_model(root: Path) -> Path:
    """A TorchScript 6-50-1 MLP regression folder (random weights, p = 0.1, tau = 4)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 50), nn.ReLU(), nn.Dropout(0.1), nn.Linear(50, 1)).eval()
    folder = root / "mlp-6-50-1"
    folder.mkdir(parents=True)
    torch.jit.save(torch.jit.script(net), str(folder / "model.ts"))
    card = {
        "name": "mlp-6-50-1",
        "version": "1",
        "task": "regression",
        "input": {"shape": [6], "dtype": "float32"},
        "architecture": {"torchscript": "model.ts"},
        "weights": {},
        "n_samples": {"default": PASSES, "max": PASSES},
        "regression": {"tau": 4.0},
    }
    (folder / "model.yaml").write_text(yaml.safe_dump(card))
    return folder


def engine_timings(model: ServedModel, repeats: int) -> dict[str, float]:
    """Median seconds of each engine stage for one row at PASSES passes."""
    row = torch.randn(1, 6, generator=torch.Generator().manual_seed(1))
    folded = row.repeat(PASSES, 1)
    request = PredictionRequest(row, PASSES, ci_level=0.95, seed=3)
    predictor = model.predictor
    raw = predictor.sampler.sample_jobs([SampleJob(row, PASSES, 3)])[0]
    prediction = predictor.predict(request)

    def forward() -> None:
        for layer in model.dropout_layers:
            layer.module.train(True)
        with torch.inference_mode():
            model.module(folded)
        for layer in model.dropout_layers:
            layer.module.train(False)

    def response() -> None:
        predict_response(model, prediction).model_dump_json(exclude_none=True)

    stages = {
        "forward": forward,
        "sampling": lambda: predictor.sampler.sample_jobs([SampleJob(row, PASSES, 3)]),
        "statistics": lambda: predictor.summarize(raw, request, 3),
        "engine": lambda: predictor.predict(request),
        "response": response,
    }
    return {name: median_seconds(run, repeats) for name, run in stages.items()}


def http_timing(models_dir: Path, repeats: int) -> float:
    """Median seconds of one v1 predict call against a uvicorn server in this process."""
    from tests.support import serve_in_thread

    body = {"inputs": [[0.1, -0.2, 0.3, 0.5, -1.0, 2.0]], "n_samples": PASSES, "seed": 3}
    with serve_in_thread(models_dir) as base_url, httpx.Client(base_url=base_url) as client:

        def call() -> None:
            reply = client.post("/v1/models/mlp-6-50-1/predict", json=body)
            reply.raise_for_status()

        return median_seconds(call, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (2 cores)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        models_dir = Path(tmp)
        model = load_model_folder(write_model(models_dir))
        times = engine_timings(model, args.repeats)
        times["http"] = http_timing(models_dir, args.repeats)
    base = times["forward"]
    rows = [[name, seconds * 1000, seconds / base] for name, seconds in times.items()]
    print(markdown_table(["stage", "ms (median)", "x forward"], rows))


if __name__ == "__main__":
    main()
