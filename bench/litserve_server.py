"""The LitServe peer of the service benchmark: the same network as TorchScript, MC dropout done
the way a LitServe user would (dropout modules in train mode, samples folded into the batch, one
forward of N x B rows), LitServe's dynamic batching across requests, one inference worker (its
HTTP server is a process of its own, as mcdrop's HTTP workers are).

    python -m bench.litserve_server --torchscript digits-cnn.pt --port 8091

Needs the bench extra (``pip install -e '.[bench]'``: ``litserve``). Speaks the body of mcdrop's
/v1 predict (``inputs``, ``n_samples``) at ``/v1/models/{model}/predict``; answers the mean and
std of the softmax over the passes.
"""

import argparse
from pathlib import Path
from typing import Any

import litserve as ls
import torch
from pydantic import BaseModel

from app.engine.dropout import find_dropout_layers
from app.registry.loading import load_model_folder
from bench.common import MODELS, example_inputs

MAX_BATCH_SIZE = 32
"""LitServe's dynamic batch: up to this many requests per predict call."""
BATCH_TIMEOUT_S = 0.002
"""How long LitServe waits to fill a batch."""


def export_torchscript(name: str, path: Path) -> Path:
    """The bundled model ``name`` traced to a TorchScript file with its dropout modules in
    train mode (the rest in eval: BatchNorm keeps its running statistics)."""
    served = load_model_folder(MODELS / name)
    served.predictor.sampler.close()  # the plain module, no mcdrop hooks
    module = served.module.eval()
    for layer in find_dropout_layers(module):
        layer.module.train()  # traced as dropout(train=True): every call samples
    example = example_inputs(served.card.input.shape, 4)
    with torch.no_grad():
        traced = torch.jit.trace(module, example, check_trace=False)  # type: ignore[no-untyped-call]
    traced.save(str(path))
    return path


class Body(BaseModel):
    """The request body (validated by FastAPI, as mcdrop's is)."""

    inputs: list[Any]
    n_samples: int = 100


class McDropoutAPI(ls.LitAPI):  # type: ignore[misc]
    """decode -> batch -> N folded passes -> per-request mean and std -> encode."""

    def __init__(self, torchscript: Path, **options: Any) -> None:
        super().__init__(**options)
        self.torchscript = torchscript

    def setup(self, device: str) -> None:
        self.model = torch.jit.load(str(self.torchscript), map_location=device)  # type: ignore[no-untyped-call]

    def decode_request(self, request: Body) -> tuple[torch.Tensor, int]:
        return torch.tensor(request.inputs, dtype=torch.float32), request.n_samples

    def batch(self, inputs: list[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, list[int], int]:
        rows = [int(x.shape[0]) for x, _ in inputs]
        return torch.cat([x for x, _ in inputs]), rows, max(n for _, n in inputs)

    def predict(self, batch: tuple[torch.Tensor, list[int], int]) -> list[dict[str, Any]]:
        x, rows, n = batch
        with torch.inference_mode():
            folded = x.repeat(n, *([1] * (x.dim() - 1)))  # (N * B, ...)
            probs = torch.softmax(self.model(folded), -1).reshape(n, x.shape[0], -1)
        mean, std = probs.mean(0), probs.std(0)
        answers, start = [], 0
        for count in rows:
            part = slice(start, start + count)
            answers.append({"mean": mean[part].tolist(), "std": std[part].tolist()})
            start += count
        return answers

    def unbatch(self, output: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return output

    def encode_response(self, output: dict[str, Any]) -> dict[str, Any]:
        return output


def build_server(torchscript: Path, model: str) -> Any:
    """One inference worker behind LitServe's own HTTP process."""
    api = McDropoutAPI(
        torchscript,
        max_batch_size=MAX_BATCH_SIZE,
        batch_timeout=BATCH_TIMEOUT_S,
        api_path=f"/v1/models/{model}/predict",
    )
    return ls.LitServer(api, accelerator="cpu", workers_per_device=1, timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--torchscript", type=Path, required=True)
    parser.add_argument("--model", default="digits-cnn")
    parser.add_argument("--port", type=int, default=8091)
    args = parser.parse_args()
    server = build_server(args.torchscript, args.model)
    server.run(host="127.0.0.1", port=args.port, log_level="warning", generate_client_file=False)


if __name__ == "__main__":
    main()
