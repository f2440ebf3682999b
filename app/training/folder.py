"""Writing a trained dropout MLP as a model folder that ``mcdrop serve`` loads as it is."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from safetensors.torch import save_file

from app.registry.card import write_card
from app.registry.loading import load_model_folder
from app.registry.served import ServedModel
from app.registry.torch_loader import sha256_of
from app.training.mlp import Hyper, Task, TrainConfig, target_precision
from app.training.noise import CHECK_LEVEL
from app.training.search import Trained

WEIGHTS_FILE = "model.safetensors"
N_SAMPLES = {"default": 100, "max": 2000}


def model_name(folder: Path) -> str:
    """A valid card name from the folder name (other characters become '-')."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "-", folder.name).lstrip("-_.")
    return name or "model"


def _training_section(
    trained: Trained, task: Task, config: TrainConfig, data: str, features: Sequence[str]
) -> dict[str, Any]:
    section: dict[str, Any] = {
        "command": "mcdrop train",
        "data": data,
        "rows": trained.rows,
        "features": list(features),
        "dropout": trained.hyper.dropout,
        "length_scale": trained.hyper.length_scale,
        "weight_decay": float(f"{trained.weight_decay:.6g}"),
        "loss": "mean(E) + weight_decay * sum ||W||^2 (see app/training/mlp.py)",
        "final_training_loss": round(trained.final_loss, 6),
        **{key: value for key, value in asdict(config).items() if key != "hidden"},
    }
    if task == "regression" and not trained.model.variance_head:
        served = served_tau(trained)
        assert trained.model.destandardize is not None
        section["tau_standardised"] = float(
            f"{served * float(trained.model.destandardize.std.pow(2).mean()):.6g}"
        )
        section["tau_source"] = "given" if trained.hyper.tau is not None else "fitted"
    if trained.check is not None:
        check = trained.check
        section["validation"] = {
            "rows": check.rows,
            "rmse": float(f"{check.rmse:.6g}"),
            "log_likelihood": round(check.log_likelihood, 6),
            f"pi_coverage_{round(CHECK_LEVEL * 100)}": round(check.pi_coverage, 6),
        }
    if trained.validation:
        section["grid_search"] = [
            _grid_point(hyper, score, noise)
            for (hyper, score), noise in zip(trained.validation, trained.fitted_noise, strict=True)
        ]
    return section


def _grid_point(hyper: Hyper, score: float, noise: float | None) -> dict[str, Any]:
    point: dict[str, Any] = {**asdict(hyper), "validation_log_likelihood": round(score, 6)}
    if noise is not None:
        point["fitted_tau"] = float(f"{1.0 / noise:.6g}")  # target units, as the card's tau
    return point


def served_tau(trained: Trained) -> float:
    """τ in target units: 1/σ² fitted on the validation split, or the given standardised τ
    over the training targets' variance."""
    if trained.noise_variance is not None:
        return 1.0 / trained.noise_variance
    assert trained.hyper.tau is not None
    return target_precision(trained.model, trained.hyper.tau)


def write_model_folder(
    out: Path,
    trained: Trained,
    task: Task,
    *,
    labels: Sequence[str] | None,
    features: Sequence[str],
    target: str,
    data: str,
    config: TrainConfig,
) -> ServedModel:
    """Write weights and card into `out`, then load the folder exactly as the server would."""
    out.mkdir(parents=True, exist_ok=True)
    model = trained.model
    weights = out / WEIGHTS_FILE
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(weights))
    weights.chmod(0o644)
    kwargs: dict[str, Any] = {
        "in_features": len(features),
        "hidden": list(config.hidden),
        "out_features": model.out_features,
        "p": trained.hyper.dropout,
    }
    card: dict[str, Any] = {
        "name": model_name(out),
        "version": "1",
        "task": task,
        "description": f"Dropout MLP trained by `mcdrop train` on {data} ({trained.rows} rows).",
        "input": {"shape": [len(features)], "dtype": "float32"},
    }
    if labels is not None:
        card["labels"] = list(labels)
    else:
        kwargs["output_standardize"] = True
        if model.variance_head:
            kwargs["variance_head"] = True
            card["regression"] = {"variance_head": True}
        else:
            card["regression"] = {"tau": float(f"{served_tau(trained):.6g}")}
    card["architecture"] = {"bundled": "dropout_mlp", "kwargs": kwargs}
    card["weights"] = {"file": WEIGHTS_FILE, "sha256": sha256_of(weights)}
    card["n_samples"] = dict(N_SAMPLES)
    card["target"] = target
    card["feature_names"] = list(features)
    card["training"] = _training_section(trained, task, config, data, features)
    write_card(out, card)
    return load_model_folder(out)
