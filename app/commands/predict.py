"""``mcdrop predict``: send rows to a running server and print their uncertainty as a table."""

from __future__ import annotations

import argparse
import csv
import json
import math
import secrets
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from app.client import (
    ClassificationRow,
    McdropClient,
    McdropClientError,
    ModelInfo,
    MultilabelRow,
    PredictResponse,
    RegressionRow,
    SegmentationRow,
    TokenRow,
)
from app.commands._local import InputError, LocalModel, input_files
from app.commands._output import EXIT_OK, EXIT_PROBLEM, EXIT_USAGE, add_url_flag, number, table
from app.commands._shared import model_folder

if TYPE_CHECKING:
    from app.inputs.base import FileInput


__all__ = ["InputError", "read_rows", "register", "render", "run"]


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``predict`` sub-command."""
    parser = commands.add_parser(
        "predict", help="predict with uncertainty on a running server and print a table"
    )
    parser.add_argument("model", help="model name (see `mcdrop models`)")
    parser.add_argument(
        "files",
        nargs="*",
        metavar="FILE",
        help="files or folders of the model's input kind: images (PNG, JPEG, WebP; DICOM, "
        "NIfTI where the card takes them), audio (WAV, FLAC, OGG); or use --input",
    )
    parser.add_argument(
        "--input",
        help="rows: a JSON or CSV file, or inline JSON (one row, a list of rows, or "
        '{"inputs": [...]}); CSV has one flattened row per line. Image and audio models: a '
        "file, or a folder of them",
    )
    parser.add_argument("--n-samples", type=int, help="MC passes (the model's default if absent)")
    parser.add_argument("--seed", type=int, help="seed; drawn and printed if absent")
    parser.add_argument("--ci-level", type=float, help="interval level (server default 0.95)")
    parser.add_argument("--batch-size", type=int, default=64, help="rows per request (default 64)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--local", action="store_true", help="run the model in this process, not on a server"
    )
    parser.add_argument("--models-dir", type=Path, default=Path("models"), help="with --local")
    parser.add_argument(
        "--max-image-pixels", type=int, default=16_777_216, help="with --local: largest image"
    )
    add_url_flag(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Predict every row (in batches, with a progress bar) and print the result."""
    from app.errors import McdropError

    if bool(args.files) == (args.input is not None):
        print("mcdrop: give FILE arguments or --input, one of the two", file=sys.stderr)
        return EXIT_USAGE
    values: list[str] = args.files or [args.input]
    seed = args.seed if args.seed is not None else secrets.randbits(63)
    try:
        run_mode = _run_local if args.local else _run_remote
        results, files = run_mode(args, values, seed)
    except InputError as exc:
        print(f"mcdrop: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (McdropClientError, McdropError, OSError) as exc:
        print(f"mcdrop: {exc}", file=sys.stderr)
        return EXIT_PROBLEM
    names = [path.name for path in files] if files is not None else None
    if args.json:
        print(results.model_dump_json(indent=2, exclude_none=True))
    else:
        print(render(results, names))
    return EXIT_OK


Send = Callable[[list[Any]], PredictResponse]
Answer = tuple[PredictResponse, list[Path] | None]
"""The merged response and the files its rows came from (None: JSON or CSV rows)."""


def _run_remote(args: argparse.Namespace, values: list[str], seed: int) -> Answer:
    options = {"n_samples": args.n_samples, "seed": seed, "ci_level": args.ci_level}
    with McdropClient(args.url, api_key=args.api_key) as client:
        model = client.model(args.model)
        takes = _remote_files(model)
        files = _files(values, takes)
        if files is not None:
            assert takes is not None
            send: Send = lambda chunk: client.predict_files(  # noqa: E731
                args.model, chunk, field=takes.field, **options
            )
            contents = [(path.name, path.read_bytes()) for path in files]
            return _in_batches(send, contents, args.batch_size), files
        rows = read_rows(values[0], model.input_shape or [])
        send = lambda chunk: client.predict(args.model, chunk, **options)  # noqa: E731
        return _in_batches(send, rows, args.batch_size), None


def _remote_files(model: ModelInfo) -> FileInput | None:
    """The files a served model takes, from its metadata."""
    from app.inputs.base import FileInput

    info = model.input.files if model.input is not None else None
    return None if info is None else FileInput(info.field, tuple(info.suffixes), info.described)


def _run_local(args: argparse.Namespace, values: list[str], seed: int) -> Answer:
    local = LocalModel(model_folder(args.models_dir, args.model), args.max_image_pixels)
    files = _files(values, local.files)
    if files is not None:
        rows: list[Any] = [path.read_bytes() for path in files]
    else:
        rows = read_rows(values[0], local.model.card.input.shape)
    response: PredictResponse = _in_batches(
        lambda chunk: local.predict(chunk, args.n_samples, seed, args.ci_level),
        rows,
        args.batch_size,
    )
    return response, files


def _files(values: list[str], takes: FileInput | None) -> list[Path] | None:
    """The model's files the values name; several values that are not all files, or a
    folder without any, are a usage error."""
    files = input_files(values, takes)
    if files is None and len(values) > 1:
        raise InputError("several inputs must be files the model takes (images, audio)")
    if files == []:
        assert takes is not None
        raise InputError(f"{' '.join(values)}: no {takes.described} files")
    return files


def read_rows(value: str, input_shape: list[int]) -> list[Any]:
    """Rows of ``input_shape`` from a file path or inline JSON; one bare row is accepted too."""
    path = Path(value)
    if value.lstrip()[:1] not in ("[", "{") and path.is_file():
        text = path.read_text()
        if path.suffix.lower() == ".csv":
            return _reshape(_csv_rows(text, value), input_shape)
    else:
        text = value
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"--input is neither a file nor valid JSON: {exc}") from None
    if isinstance(data, dict):
        data = data.get("inputs")
    if not isinstance(data, list) or not data:
        raise InputError("--input must hold a non-empty list of rows")
    if _depth(data) == len(input_shape):
        data = [data]
    return data


def render(prediction: PredictResponse, names: list[str] | None = None) -> str:
    """A header line and one table line per row (per output for regression); rows are
    numbered, or called by ``names`` (image files)."""
    level = f"{prediction.ci_level:.0%}"
    header = (
        f"{prediction.model} v{prediction.version} ({prediction.task}): "
        f"{prediction.n_samples} MC passes, seed {prediction.seed}, {level} intervals"
    )
    rows: list[Any] = list(prediction.predictions)
    keys: list[object] = list(names) if names is not None else list(range(len(rows)))
    headers, lines_of = _LAYOUTS[prediction.task]
    lines = [line for key, row in zip(keys, rows, strict=True) for line in lines_of(key, row)]
    headers = [h.replace("LEVEL", level) for h in headers]
    return header + "\n\n" + table(headers, lines)


def _in_batches(send: Send, rows: list[Any], batch_size: int) -> PredictResponse:
    """Every row's answer, ``batch_size`` rows per request, with a progress bar when there is
    more than one batch."""
    batch_size = max(1, batch_size)
    batches = math.ceil(len(rows) / batch_size)
    parts: list[PredictResponse] = []
    # One seed for every batch: masks depend on (seed, pass), not on the batch, so batching
    # does not change any row's numbers.
    with tqdm(
        total=len(rows), unit="row", disable=True if batches < 2 else None, file=sys.stderr
    ) as bar:
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            parts.append(send(chunk))
            bar.update(len(chunk))
    merged: list[Any] = [row for part in parts for row in part.predictions]
    return parts[0].model_copy(update={"predictions": merged})


def _classification_lines(index: object, row: Any) -> list[list[object]]:
    assert isinstance(row, ClassificationRow)
    cls = row.predicted_class
    name = f"{cls} ({row.label})" if row.label is not None and row.label != str(cls) else str(cls)
    interval = f"[{number(row.ci_lower[cls], 3)}, {number(row.ci_upper[cls], 3)}]"
    return [
        [
            index,
            name,
            row.confidence,
            interval,
            row.predictive_entropy,
            row.mutual_information,
            row.variation_ratio,
        ]
    ]


def _regression_lines(index: object, row: Any) -> list[list[object]]:
    assert isinstance(row, RegressionRow)
    lines: list[list[object]] = []
    for j, mean in enumerate(row.mean):
        ci = f"[{number(row.ci_lower[j])}, {number(row.ci_upper[j])}]"
        pi = f"[{number(row.pi_lower[j])}, {number(row.pi_upper[j])}]"
        lines.append([index, j, mean, row.std[j], ci, pi])
    return lines


def _multilabel_lines(index: object, row: Any) -> list[list[object]]:
    """One line per label; ``*`` marks the predicted ones (mean >= threshold)."""
    assert isinstance(row, MultilabelRow)
    lines: list[list[object]] = []
    for k, mean in enumerate(row.mean):
        interval = f"[{number(row.ci_lower[k], 3)}, {number(row.ci_upper[k], 3)}]"
        on = mean >= row.threshold
        entropy, information = row.predictive_entropy[k], row.mutual_information[k]
        lines.append([index, k, "*" if on else "", mean, interval, entropy, information])
    return lines


def _token_lines(index: object, row: Any) -> list[list[object]]:
    """One line per word of the text."""
    assert isinstance(row, TokenRow)
    return [
        [index, t.text, t.label, t.confidence, t.predictive_entropy, t.mutual_information]
        for t in row.tokens
    ]


def _segmentation_lines(index: object, row: Any) -> list[list[object]]:
    """One line per class: its pixels, its area over passes, and the image's uncertainty."""
    assert isinstance(row, SegmentationRow)
    mi, fg = row.mean_mutual_information, row.foreground_mutual_information
    return [
        [index, a.label, a.pixels, f"{a.mean:.1f} [{a.lower:.1f}, {a.upper:.1f}]", mi, fg]
        for a in row.areas
    ]


_LAYOUTS: dict[str, tuple[list[str], Callable[[object, Any], list[list[object]]]]] = {
    "classification": (
        ["row", "class", "confidence", "LEVEL interval", "entropy", "MI", "var. ratio"],
        _classification_lines,
    ),
    "regression": (
        ["row", "output", "mean", "std", "LEVEL CI (mean)", "LEVEL PI (new y)"],
        _regression_lines,
    ),
    "multilabel": (
        ["row", "label", "on", "mean", "LEVEL interval", "entropy", "MI"],
        _multilabel_lines,
    ),
    "token_classification": (
        ["row", "word", "label", "confidence", "entropy", "MI"],
        _token_lines,
    ),
    "segmentation": (
        ["row", "class", "pixels", "area over passes (LEVEL)", "mean MI", "foreground MI"],
        _segmentation_lines,
    ),
}
"""Task -> the table's headers and each row's lines."""


def _csv_rows(text: str, source: str) -> list[list[float]]:
    rows = []
    for number_, line in enumerate(csv.reader(text.splitlines()), start=1):
        if not line:
            continue
        try:
            rows.append([float(cell) for cell in line])
        except ValueError:
            if number_ == 1:
                continue  # a header line
            raise InputError(f"{source}:{number_}: not a row of numbers") from None
    if not rows:
        raise InputError(f"{source}: no rows")
    return rows


def _reshape(rows: list[list[float]], shape: list[int]) -> list[Any]:
    size = math.prod(shape)
    if len(shape) <= 1:
        return rows
    shaped = []
    for index, flat in enumerate(rows):
        if len(flat) != size:
            raise InputError(f"CSV row {index + 1} has {len(flat)} values, the model needs {size}")
        shaped.append(_nest(flat, shape))
    return shaped


def _nest(flat: list[float], shape: list[int]) -> Any:
    if len(shape) == 1:
        return flat
    step = len(flat) // shape[0]
    return [_nest(flat[i * step : (i + 1) * step], shape[1:]) for i in range(shape[0])]


def _depth(value: Any) -> int:
    depth = 0
    while isinstance(value, list) and value:
        value = value[0]
        depth += 1
    return depth
