"""What ``mcdrop predict`` needs for image files and for running a model in-process (no server)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


def image_files(value: str) -> list[Path] | None:
    """The image files ``--input`` names: one image file, or every image in a folder (sorted by
    name); None when it names neither (rows as JSON or CSV)."""
    if value.lstrip()[:1] in ("[", "{"):
        return None
    path = Path(value)
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
        return [path]
    return None


class LocalModel:
    """A model folder loaded in this process, answering like the server's v1 predict."""

    def __init__(self, folder: Path, max_image_pixels: int) -> None:
        from app.registry.loading import load_model_folder
        from app.registry.served import LoadOptions

        self.model = load_model_folder(folder, LoadOptions(max_image_pixels=max_image_pixels))

    def predict(
        self, rows: Sequence[Any], n_samples: int | None, seed: int, ci_level: float | None
    ) -> Any:
        """A PredictResponse for rows (float rows, or encoded image bytes)."""
        from app.api.native import predict_response
        from app.dataplane.policy import local_request

        model = self.model
        inputs = model.rows_to_tensor(rows, max(1, len(rows)))
        request = local_request(model, inputs, n_samples=n_samples, seed=seed, ci_level=ci_level)
        prediction = model.predictor.predict(request)
        return predict_response(model, prediction, rows=rows)
