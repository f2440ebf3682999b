"""Test helpers: tiny fixed-weight models written as real model folders."""

from __future__ import annotations

import hashlib
import importlib.util
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
import yaml
from prometheus_client.parser import text_string_to_metric_families
from safetensors.torch import save_file
from torch import nn

REPO_ROOT = Path(__file__).resolve().parents[1]
BUNDLED_MODELS = REPO_ROOT / "models"

TINY_NET_SOURCE = textwrap.dedent(
    '''
    import torch
    from torch import nn


    class TinyNet(nn.Module):
        """Linear -> Dropout -> Linear; with the test weights below, y = 2x + 1 without dropout."""

        def __init__(self, in_features: int = 2, hidden: int = 4, out_features: int = 2,
                     p: float = 0.5) -> None:
            super().__init__()
            self.inp = nn.Linear(in_features, hidden)
            self.drop = nn.Dropout(p)
            self.out = nn.Linear(hidden, out_features)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.out(self.drop(self.inp(x)))


    class NoDropoutNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inp = nn.Linear(2, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.inp(x)
    '''
)

BUNDLED_MODEL_NAMES = frozenset(
    {
        "digits-mlp",
        "digits-cnn",
        "diabetes-mlp",
        "ticket-triage",
        "digits-image",
        "spoken-digits",
        "lesion-seg",
    }
)
"""The models of ``models/`` that every listing (v1, the CLI table, the image) must show."""


def tiny_state(in_features: int = 2, hidden: int = 4, out_features: int = 2) -> dict[str, Any]:
    """Weights making TinyNet compute y = 2x + 1 (per output) when dropout is off.

    The hidden layer copies x into pairs of units (h = [x, x] for in=out=2, hidden=4); the
    output sums each pair: y_j = h_j + h_{j+in} + 1 = 2 x_j + 1.
    """
    assert hidden == 2 * in_features and out_features == in_features
    eye = torch.eye(in_features)
    return {
        "inp.weight": torch.cat([eye, eye]),
        "inp.bias": torch.zeros(hidden),
        "out.weight": torch.cat([eye, eye], dim=1),
        "out.bias": torch.ones(out_features),
    }


def write_model(
    root: Path,
    name: str,
    *,
    task: str = "classification",
    state: dict[str, Any] | None = None,
    card: dict[str, Any] | None = None,
    cls: str = "TinyNet",
    kwargs: dict[str, Any] | None = None,
) -> Path:
    """A model folder using the TinyNet source file and safetensors weights."""
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "net.py").write_text(TINY_NET_SOURCE)
    weights = folder / "model.safetensors"
    save_file(state if state is not None else tiny_state(), str(weights))
    document: dict[str, Any] = {
        "name": name,
        "version": "3",
        "task": task,
        "input": {"shape": [2], "dtype": "float32"},
        "architecture": {"file": "net.py", "class": cls, "kwargs": kwargs or {}},
        "weights": {
            "file": "model.safetensors",
            "sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
        },
        "n_samples": {"default": 20, "max": 500},
    }
    if task == "classification":
        document["labels"] = ["left", "right"]
    else:
        document["regression"] = {"tau": 4.0}
    document.update(card or {})
    (folder / "model.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    return folder


def small_mlp(p: float = 0.5, batchnorm: bool = False) -> nn.Module:
    """A seeded random MLP with a dropout layer (and optionally BatchNorm before it)."""
    torch.manual_seed(0)
    layers: list[nn.Module] = [nn.Linear(3, 8)]
    if batchnorm:
        layers.append(nn.BatchNorm1d(8))
    layers += [nn.ReLU(), nn.Dropout(p), nn.Linear(8, 2)]
    model = nn.Sequential(*layers)
    if batchnorm:
        bn = layers[1]
        assert isinstance(bn, nn.BatchNorm1d)
        assert bn.running_mean is not None and bn.running_var is not None
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
    return model.eval()


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_ready(base_url: str, process: subprocess.Popen[bytes] | None = None) -> None:
    """Poll ``/v2/health/ready`` until it answers 200; fail if ``process`` dies first."""
    deadline = time.monotonic() + 90
    while True:
        try:
            with urllib.request.urlopen(f"{base_url}/v2/health/ready", timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if process is not None and process.poll() is not None:
            output = process.stdout.read().decode() if process.stdout else ""
            raise AssertionError(f"server exited with {process.returncode}:\n{output}")
        assert time.monotonic() < deadline, "server did not become ready"
        time.sleep(0.2)


@contextmanager
def serve_in_thread(models_dir: Path = BUNDLED_MODELS, **settings: Any) -> Iterator[str]:
    """A real uvicorn server for an mcdrop app on a free loopback port; yields its base URL."""
    import uvicorn

    from app.config import load_settings
    from app.main import create_app
    from app.server import server_config

    port = free_port()
    resolved = load_settings(models_dir=models_dir, **settings)
    app = create_app(resolved)
    config = server_config(app, resolved, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base_url)
        yield base_url
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def metric_value(text: str, name: str, labels: dict[str, str]) -> float:
    """The value of the first sample `name` whose labels include `labels` (0 if none)."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def load_script(name: str) -> ModuleType:
    """``scripts/<name>.py`` as a module, without running it (its sibling scripts importable)."""
    scripts = str(REPO_ROOT / "scripts")
    sys.path.insert(0, scripts)
    try:
        spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "scripts" / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up while being built
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(scripts)


def numbers_of(answer: Any) -> Any:
    """A /v1 predict answer without its ``prediction_id`` (fresh for every prediction, so two
    answers of the same request differ there and nowhere else)."""
    assert isinstance(answer["prediction_id"], str)
    return {key: value for key, value in answer.items() if key != "prediction_id"}


def float32_line_and_classifier(model_factory: Callable[..., Path]) -> Path:
    """Two float32 TinyNet folders in one models dir: ``line`` (regression, one feature) and
    ``cls`` (the default classifier, y = 2x + 1 on two features); returns the models dir."""
    regression = model_factory(
        "line",
        task="regression",
        state=tiny_state(1, 2, 1),
        kwargs={"in_features": 1, "hidden": 2, "out_features": 1},
        card={"input": {"shape": [1], "dtype": "float32"}},
    )
    model_factory("cls")
    models_dir: Path = regression.parent
    return models_dir
