"""A deliberately naive MC dropout server, the baseline of the service benchmark.

What people write first: FastAPI, one request at a time, a Python loop of N forward passes with
the dropout modules in train mode, mean and std of the softmax outputs. No folding, no prefix,
no batching across requests. It speaks a subset of mcdrop's /v1 predict API.

    python -m bench.naive_server --model digits-cnn --port 8090
"""

from __future__ import annotations

import argparse
from typing import Any

import torch
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel

from app.engine.dropout import find_dropout_layers
from app.registry.loading import load_model_folder
from bench.common import MODELS, load_options


class Body(BaseModel):
    inputs: list[Any]
    n_samples: int = 100


def build_app(name: str) -> FastAPI:
    served = load_model_folder(MODELS / name, load_options())
    served.predictor.sampler.close()  # plain module, no mcdrop hooks
    module = served.module
    device = next(module.parameters()).device
    for layer in find_dropout_layers(module):
        layer.module.train()
    app = FastAPI()

    @app.post("/v1/models/{model}/predict")
    def predict(model: str, body: Body) -> dict[str, Any]:
        x = torch.tensor(body.inputs, dtype=torch.float32, device=device)
        with torch.inference_mode():
            probs = torch.stack([torch.softmax(module(x), -1) for _ in range(body.n_samples)])
        return {"mean": probs.mean(0).tolist(), "std": probs.std(0).tolist()}

    @app.get("/v2/health/ready")
    def ready() -> dict[str, bool]:
        return {"ready": True}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="digits-cnn")
    parser.add_argument("--port", type=int, default=8090)
    args = parser.parse_args()
    uvicorn.run(build_app(args.model), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
