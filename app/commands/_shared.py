"""Helpers shared by the sub-commands (not a sub-command itself)."""

from __future__ import annotations

from pathlib import Path


def model_folder(models_dir: Path, model: str) -> Path:
    """The folder of `model`: a path to a model folder, or its name under `models_dir`."""
    given = Path(model)
    return given if (given / "model.yaml").is_file() else models_dir / model
