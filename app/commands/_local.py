"""What ``mcdrop predict`` needs for files (images, audio, scans) and for running a model
in-process (no server)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from app.inputs.base import FileInput


class InputError(ValueError):
    """The input cannot be read as rows for the model."""


def input_files(values: Sequence[str], files: FileInput | None) -> list[Path] | None:
    """The files the inputs name, of the model's input kind (``files``: its endings): files,
    and every such file of a folder (sorted by name); None when one value names neither (rows
    as JSON or CSV) or the model takes no files. Several values must all be files or folders."""
    if files is None or (len(values) == 1 and not _names_files(values[0], files)):
        return None
    paths: list[Path] = []
    for value in values:
        path = Path(value)
        if path.is_dir():
            paths.extend(sorted(p for p in path.iterdir() if p.is_file() and files.takes(p.name)))
        elif path.is_file() and files.takes(path.name):
            paths.append(path)
        else:
            raise InputError(f"{value}: not a {files.described} file nor a folder")
    return paths


def _names_files(value: str, files: FileInput) -> bool:
    if value.lstrip()[:1] in ("[", "{"):
        return False
    path = Path(value)
    return path.is_dir() or (path.is_file() and files.takes(path.name))


class LocalModel:
    """A model folder loaded in this process, answering like the server's v1 predict."""

    def __init__(self, folder: Path, max_image_pixels: int) -> None:
        from app.registry.loading import load_model_folder
        from app.registry.served import LoadOptions

        self.model = load_model_folder(folder, LoadOptions(max_image_pixels=max_image_pixels))

    @property
    def files(self) -> FileInput | None:
        """The files the model's input kind takes, if any."""
        return self.model.input_kind.describe().files

    def predict(
        self, rows: Sequence[Any], n_samples: int | None, seed: int, ci_level: float | None
    ) -> Any:
        """A PredictResponse for rows (float rows, or encoded image or audio bytes)."""
        from app.api.native import predict_response
        from app.dataplane.policy import local_request

        model = self.model
        inputs = model.rows_to_tensor(rows, max(1, len(rows)))
        request = local_request(model, inputs, n_samples=n_samples, seed=seed, ci_level=ci_level)
        prediction = model.predictor.predict(request)
        return predict_response(model, prediction, rows=rows)
