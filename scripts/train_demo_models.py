"""Train the bundled demo models deterministically and write them to the model repository.

Writes one folder per model under `--out` (default `models/`), each with `model.safetensors`
and a `model.yaml` card:
- `digits-mlp`: DropoutMLP 64 -> [128, 128] -> 10 on raw 0..16 digits pixels;
- `digits-cnn`: DigitsCNN on (1, 8, 8) raw digits images, dropout only in the head;
- `diabetes-mlp`: DropoutMLP regression on the 10 sklearn diabetes features, outputs in target
  units, with the aleatoric precision `tau` chosen by MC-dropout log-likelihood on a
  validation split.

Usage: `python scripts/train_demo_models.py [--only NAME] [--out DIR]`. The splits are exposed
as `digits_split()` / `diabetes_split()` so tests evaluate on exactly the held-out rows.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from sklearn.datasets import load_diabetes, load_digits
from sklearn.model_selection import train_test_split
from torch import Tensor, nn
from torch.nn.modules.dropout import _DropoutNd

from app.architectures import build_bundled
from app.architectures.layers import Destandardize, Standardize
from app.registry.card import card_yaml

SCRIPT = "scripts/train_demo_models.py"
SPLIT_SEED = 0
TEST_FRACTION = 0.25
VAL_FRACTION = 0.2
EVAL_PASSES = 100
N_SAMPLES = {"default": 100, "max": 2000}
DIGIT_LABELS = [str(d) for d in range(10)]
# Pixels that barely vary in training would be blown up at test time by a tiny std.
MIN_PIXEL_STD = 1.0

Arrays = tuple[np.ndarray, ...]


@dataclass
class Result:
    """What one trained model reports to the results table and its card."""

    name: str
    task: str
    n_test: int
    seconds: float
    accuracy: float | None = None
    rmse: float | None = None
    log_likelihood: float | None = None
    tau: float | None = None


def digits_split() -> Arrays:
    """(x_train (N, 64) float32, x_test, y_train (N,) int64, y_test): stratified 75/25 split."""
    data = load_digits()
    x = data.data.astype(np.float32)
    y = data.target.astype(np.int64)
    parts: Arrays = tuple(
        train_test_split(x, y, test_size=TEST_FRACTION, stratify=y, random_state=SPLIT_SEED)
    )
    return parts


def diabetes_split() -> Arrays:
    """(x_train, x_val, x_test (N, 10) float32, y_train, y_val, y_test (N,) float32).

    25% test, then 20% of the remainder as the validation split used to choose `tau`.
    """
    data = load_diabetes()
    x = data.data.astype(np.float32)
    y = data.target.astype(np.float32)
    x_rest, x_test, y_rest, y_test = train_test_split(
        x, y, test_size=TEST_FRACTION, random_state=SPLIT_SEED
    )
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=VAL_FRACTION, random_state=SPLIT_SEED
    )
    return x_train, x_val, x_test, y_train, y_val, y_test


def enable_mc_dropout(model: nn.Module) -> nn.Module:
    """Put `model` in eval mode with only its dropout modules in train mode (BatchNorm stays)."""
    model.eval()
    for module in model.modules():
        if isinstance(module, _DropoutNd):
            module.train()
    return model


@torch.no_grad()
def mc_forward(model: nn.Module, x: Tensor, passes: int, seed: int = SPLIT_SEED) -> Tensor:
    """Stochastic passes of `model` on x: (B, ...) -> (passes, B, out), seeded."""
    enable_mc_dropout(model)
    torch.manual_seed(seed)
    return torch.stack([model(x) for _ in range(passes)])


def mc_accuracy(model: nn.Module, x: Tensor, y: Tensor, passes: int = EVAL_PASSES) -> float:
    """Accuracy of argmax of the mean softmax over `passes` MC-dropout passes."""
    probs = mc_forward(model, x, passes).softmax(dim=-1).mean(dim=0)
    return float((probs.argmax(dim=-1) == y).float().mean())


def mc_log_likelihood(samples: Tensor, y: Tensor, tau: float) -> float:
    """Mean over rows of logsumexp_t log N(y | ŷ_t, 1/tau) - log T; samples: (T, B), y: (B,)."""
    log_pdf = -0.5 * tau * (y - samples) ** 2 + 0.5 * math.log(tau) - 0.5 * math.log(2 * math.pi)
    per_row = torch.logsumexp(log_pdf, dim=0) - math.log(samples.shape[0])
    return float(per_row.mean())


def _fit(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    *,
    epochs: int,
    lr: float,
    weight_decay: float,
    batch_size: int,
) -> None:
    """AdamW with cosine learning-rate decay over shuffled mini-batches (seeded generator)."""
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = math.ceil(len(x) / batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, epochs * steps_per_epoch)
    generator = torch.Generator().manual_seed(SPLIT_SEED)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), batch_size):
            idx = order[start : start + batch_size]
            optimiser.zero_grad()
            torch.autograd.backward(loss_fn(model(x[idx]), y[idx]))
            optimiser.step()
            schedule.step()
    model.eval()


def _set_stats(layer: object, mean: Tensor, std: Tensor) -> None:
    if not isinstance(layer, Standardize | Destandardize):
        raise TypeError(f"expected a Standardize/Destandardize layer, got {type(layer)}")
    layer.set_statistics(mean, std)


def train_digits_mlp() -> tuple[nn.Module, dict[str, object], Result]:
    """DropoutMLP on flattened raw digits; returns (model, kwargs, result)."""
    start = time.perf_counter()
    x_train, x_test, y_train, y_test = (torch.from_numpy(a) for a in digits_split())
    kwargs: dict[str, object] = {
        "in_features": 64,
        "hidden": [128, 128],
        "out_features": 10,
        "p": 0.2,
    }
    torch.manual_seed(SPLIT_SEED)
    model = build_bundled("dropout_mlp", kwargs)
    _set_stats(model.standardize, x_train.mean(dim=0), x_train.std(dim=0).clamp_min(MIN_PIXEL_STD))
    _fit(
        model, x_train, y_train, nn.functional.cross_entropy,
        epochs=60, lr=3e-3, weight_decay=1e-4, batch_size=64,
    )  # fmt: skip
    accuracy = mc_accuracy(model, x_test, y_test)
    seconds = time.perf_counter() - start
    return model, kwargs, Result("digits-mlp", "classification", len(y_test), seconds, accuracy)


def train_digits_cnn() -> tuple[nn.Module, dict[str, object], Result]:
    """DigitsCNN on (1, 8, 8) raw digits images; returns (model, kwargs, result)."""
    start = time.perf_counter()
    x_train, x_test, y_train, y_test = (torch.from_numpy(a) for a in digits_split())
    x_train, x_test = x_train.view(-1, 1, 8, 8), x_test.view(-1, 1, 8, 8)
    kwargs: dict[str, object] = {"in_channels": 1, "num_classes": 10, "channels": [16, 32]}
    kwargs |= {"hidden": 64, "p": 0.3}
    torch.manual_seed(SPLIT_SEED)
    model = build_bundled("digits_cnn", kwargs)
    _set_stats(model.standardize, x_train.mean().reshape(1), x_train.std().reshape(1))
    _fit(
        model, x_train, y_train, nn.functional.cross_entropy,
        epochs=30, lr=3e-3, weight_decay=1e-4, batch_size=64,
    )  # fmt: skip
    accuracy = mc_accuracy(model, x_test, y_test)
    seconds = time.perf_counter() - start
    return model, kwargs, Result("digits-cnn", "classification", len(y_test), seconds, accuracy)


def _choose_tau(samples: Tensor, y: Tensor) -> float:
    """The tau on a log grid (aleatoric std 20..120 target units) maximising the MC LL."""
    stds = np.geomspace(20.0, 120.0, 25)
    taus = [float(f"{1.0 / s**2:.3g}") for s in stds]
    return max(taus, key=lambda tau: mc_log_likelihood(samples, y, tau))


def train_diabetes_mlp() -> tuple[nn.Module, dict[str, object], Result]:
    """Regression DropoutMLP on diabetes, tau chosen on validation; (model, kwargs, result)."""
    start = time.perf_counter()
    x_train, x_val, x_test, y_train, y_val, y_test = (torch.from_numpy(a) for a in diabetes_split())
    kwargs: dict[str, object] = {"in_features": 10, "hidden": [50], "out_features": 1}
    kwargs |= {"p": 0.1, "output_standardize": True}
    torch.manual_seed(SPLIT_SEED)
    model = build_bundled("dropout_mlp", kwargs)
    _set_stats(model.standardize, x_train.mean(dim=0), x_train.std(dim=0))
    y_mean, y_std = y_train.mean().reshape(1), y_train.std().reshape(1)
    _set_stats(model.destandardize, y_mean, y_std)
    variance = float(y_std**2)

    def scaled_mse(prediction: Tensor, target: Tensor) -> Tensor:
        # MSE in standardised target units, so lr and weight decay do not depend on y's scale.
        return nn.functional.mse_loss(prediction, target) / variance

    _fit(
        model, x_train, y_train.unsqueeze(1), scaled_mse,
        epochs=50, lr=3e-3, weight_decay=3.0, batch_size=32,
    )  # fmt: skip
    tau = _choose_tau(mc_forward(model, x_val, EVAL_PASSES)[..., 0], y_val)
    samples = mc_forward(model, x_test, EVAL_PASSES)[..., 0]
    rmse = float(((samples.mean(dim=0) - y_test) ** 2).mean().sqrt())
    log_likelihood = mc_log_likelihood(samples, y_test, tau)
    seconds = time.perf_counter() - start
    result = Result("diabetes-mlp", "regression", len(y_test), seconds)
    result.rmse, result.log_likelihood, result.tau = rmse, log_likelihood, tau
    return model, kwargs, result


TRAINERS: dict[str, Callable[[], tuple[nn.Module, dict[str, object], Result]]] = {
    "digits-mlp": train_digits_mlp,
    "digits-cnn": train_digits_cnn,
    "diabetes-mlp": train_diabetes_mlp,
}
BUNDLED_NAME = {
    "digits-mlp": "dropout_mlp",
    "digits-cnn": "digits_cnn",
    "diabetes-mlp": "dropout_mlp",
}
DESCRIPTIONS = {
    "digits-mlp": "MLP with dropout on scikit-learn's 8x8 digits, raw 0..16 pixels flattened.",
    "digits-cnn": "Small CNN on scikit-learn's 8x8 digits (raw 0..16 pixels), dropout in head.",
    "diabetes-mlp": "MLP regression of diabetes progression from scikit-learn's 10 features.",
}
INPUT_SHAPES = {"digits-mlp": [64], "digits-cnn": [1, 8, 8], "diabetes-mlp": [10]}
# What the web page needs to draw an input form: the digits' pixel range, the diabetes columns.
INPUT_HINTS: dict[str, dict[str, object]] = {
    "digits-mlp": {"value_range": [0, 16]},
    "digits-cnn": {"value_range": [0, 16]},
    "diabetes-mlp": {"feature_names": list(load_diabetes().feature_names)},
}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def save_weights(folder: Path, model: nn.Module) -> str:
    """``folder/model.safetensors`` (created with its folder, mode 644); returns its sha256."""
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / "model.safetensors"
    state = {key: value.detach().contiguous() for key, value in model.state_dict().items()}
    save_file(state, str(weights))
    weights.chmod(0o644)
    return _sha256(weights)


def write_weights_and_card(folder: Path, model: nn.Module, card: dict[str, object]) -> None:
    """``folder/model.safetensors`` and ``folder/model.yaml``, the card's weights section set."""
    card["weights"] = {"file": "model.safetensors", "sha256": save_weights(folder, model)}
    (folder / "model.yaml").write_text(card_yaml(card))


def _card(result: Result, kwargs: dict[str, object], sha256: str) -> dict[str, object]:
    """The model.yaml content, keys in the card's documented order."""
    card: dict[str, object] = {
        "name": result.name,
        "version": "1",
        "task": result.task,
        "description": DESCRIPTIONS[result.name],
        "input": {"shape": INPUT_SHAPES[result.name], "dtype": "float32"},
    }
    if result.task == "classification":
        card["labels"] = DIGIT_LABELS
    card["architecture"] = {"bundled": BUNDLED_NAME[result.name], "kwargs": kwargs}
    card["weights"] = {"file": "model.safetensors", "sha256": sha256}
    card["n_samples"] = dict(N_SAMPLES)
    training: dict[str, object] = {"script": SCRIPT}
    if result.task == "regression":
        card["regression"] = {"tau": result.tau}
        training["test_rmse"] = round(float(result.rmse or 0.0), 3)
        training["test_log_likelihood"] = round(float(result.log_likelihood or 0.0), 4)
    else:
        training["test_accuracy"] = round(float(result.accuracy or 0.0), 4)
    training["n_test"] = result.n_test
    card.update(INPUT_HINTS[result.name])
    card["training"] = training
    return card


def write_model(out_dir: Path, model: nn.Module, kwargs: dict[str, object], result: Result) -> None:
    """Write `out_dir/<name>/model.safetensors` and its `model.yaml` card."""
    folder = out_dir / result.name
    card = _card(result, kwargs, save_weights(folder, model))
    (folder / "model.yaml").write_text(card_yaml(card))


def _fmt(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def results_table(results: list[Result]) -> str:
    """A Markdown table of the results."""
    lines = [
        "| model | task | n_test | MC accuracy | RMSE | MC log-lik | tau | seconds |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        cells = [r.name, r.task, str(r.n_test), _fmt(r.accuracy, 4), _fmt(r.rmse, 2)]
        cells += [_fmt(r.log_likelihood, 3), "-" if r.tau is None else f"{r.tau:.3g}"]
        cells.append(f"{r.seconds:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Parse flags, train the selected models and write them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--only", choices=sorted(TRAINERS), help="train just this model")
    parser.add_argument("--out", type=Path, default=Path("models"), help="model repository")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    results = []
    for name in [args.only] if args.only else list(TRAINERS):
        model, kwargs, result = TRAINERS[name]()
        write_model(args.out, model, kwargs, result)
        results.append(result)
    print(results_table(results))


if __name__ == "__main__":
    main()
