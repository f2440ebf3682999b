"""``mcdrop evaluate``: score a model's predictions and uncertainty on a labelled CSV file.

Locally (the model folder under ``--models-dir``) or against a running server (``--url``);
both print the same metrics and, with ``--out``, write the pictures and an HTML report.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.client import McdropClient, McdropClientError
from app.commands._output import EXIT_OK, EXIT_PROBLEM, EXIT_USAGE, add_url_flag

if TYPE_CHECKING:
    import numpy as np

    from app.api.schemas import EvaluateResponse
    from app.engine.evaluation.conformal import ConformalReport


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``evaluate`` sub-command."""
    evaluate = commands.add_parser(
        "evaluate", help="accuracy, calibration and selective metrics on a labelled CSV file"
    )
    evaluate.add_argument("model", help="model name (its folder under --models-dir, or on --url)")
    evaluate.add_argument("--data", type=Path, required=True, help="CSV file with a header row")
    evaluate.add_argument("--target", help="label column (default: the card's 'target')")
    add_url_flag(evaluate, default=None)  # no --url: evaluate locally
    evaluate.add_argument("--models-dir", type=Path, default=Path("models"))
    evaluate.add_argument("--n-samples", type=int, help="MC passes (default: the model's)")
    evaluate.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    evaluate.add_argument(
        "--ci-level", type=float, default=None, help="regression PI level (default 0.95)"
    )
    evaluate.add_argument(
        "--ranking-score",
        default="predictive_entropy",
        choices=["predictive_entropy", "mutual_information", "variation_ratio", "confidence"],
        help="uncertainty that orders rows for the selective metrics",
    )
    evaluate.add_argument(
        "--ood-data",
        type=Path,
        help="CSV of out-of-distribution rows (local only): AUROC of the shift score, MI, "
        "entropy and 1 - confidence against --data",
    )
    evaluate.add_argument("--out", type=Path, help="write PNG pictures and report.html here")
    evaluate.add_argument("--json", action="store_true", help="print the full JSON report")
    evaluate.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Evaluate, print the metrics, write the report files when asked."""
    from app.commands.tabular import TableError
    from app.errors import InvalidInputError, McdropError
    from app.reporting.figures import PlottingUnavailableError

    try:
        if args.ood_data is not None and args.url:
            raise TableError("--ood-data evaluates locally: leave out --url")
        response = _remote(args) if args.url else _local(args)
        ood = None
        if args.ood_data is not None:
            from app.commands.ood_report import ood_report

            ood = ood_report(args)
        _show(response, args, ood)
    except (TableError, InvalidInputError) as exc:  # the data file does not fit the model
        print(f"mcdrop evaluate: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (McdropError, McdropClientError, PlottingUnavailableError) as exc:
        print(f"mcdrop evaluate: {exc}", file=sys.stderr)
        return EXIT_PROBLEM
    return EXIT_OK


def _local(args: argparse.Namespace) -> EvaluateResponse:
    import torch

    from app.api.schemas import EvaluateResponse
    from app.commands._shared import model_folder
    from app.commands.tabular import TableError, labelled_rows
    from app.dataplane.policy import local_request
    from app.engine.evaluation import evaluate, parse_targets
    from app.registry.loading import load_model_folder

    model = load_model_folder(model_folder(args.models_dir, args.model))
    spec = model.predictor.spec
    if spec.task == "segmentation":
        inputs, masks = mask_data(args.data)
        targets = parse_targets(masks, spec, model.card.labels, model.output_shape)
    else:
        target = args.target or model.card.target
        if target is None:
            raise TableError("name the label column with --target (the model card has no 'target')")
        inputs, labels = labelled_rows(args.data, target, model.card.input.shape)
        assert labels is not None
        targets = parse_targets(
            typed_labels(labels, spec.task), spec, model.card.labels, model.output_shape
        )
    request = local_request(
        model,
        torch.from_numpy(inputs),
        n_samples=args.n_samples,
        ci_level=args.ci_level,
        seed=args.seed,
    )
    result = evaluate(model.predictor, request, targets, ranking_score=args.ranking_score)
    return EvaluateResponse.of(model.name, model.version, model.card.task, result)


def mask_data(path: Path) -> tuple[np.ndarray, list[Any]]:
    """(inputs (B, C, H, W) float64, target masks as H x W lists) of a segmentation set: an
    ``.npz`` file with the arrays ``inputs`` and ``masks`` (class indices)."""
    import numpy as np

    from app.commands.tabular import TableError

    try:
        with np.load(path, allow_pickle=False) as arrays:
            inputs, masks = arrays["inputs"], arrays["masks"]
    except (OSError, KeyError, ValueError) as exc:
        raise TableError(
            f"{path}: a segmentation set is an .npz file of 'inputs' (B, C, H, W) and 'masks' "
            f"(B, H, W): {exc}"
        ) from None
    if inputs.ndim != 4 or masks.shape != (inputs.shape[0], *inputs.shape[2:]):
        raise TableError(f"{path}: inputs {inputs.shape} and masks {masks.shape} do not match")
    return inputs.astype(np.float64), masks.astype(np.int64).tolist()


def typed_labels(labels: list[str], task: str) -> list[Any]:
    """Label cells as the API takes them: text for classes, numbers for regression."""
    if task == "classification":
        return list(labels)
    from app.commands.tabular import TableError

    try:
        return [float(label) for label in labels]
    except ValueError as exc:
        raise TableError(f"regression targets must be numbers: {exc}") from None


def connect(args: argparse.Namespace) -> McdropClient:
    """The client of the server at ``--url`` (tests replace this to reach an in-process app)."""
    return McdropClient(args.url, timeout=600.0, api_key=args.api_key)


def _remote(args: argparse.Namespace) -> EvaluateResponse:
    from app.commands.tabular import TableError, labelled_rows

    with connect(args) as client:
        info = client.model(args.model)
        if info.task == "segmentation":
            inputs, masks = mask_data(args.data)
            return client.evaluate(
                args.model, inputs.tolist(), masks, n_samples=args.n_samples, seed=args.seed
            )
        target = args.target or info.target
        if target is None:
            raise TableError("name the label column with --target (the card has no 'target')")
        inputs, labels = labelled_rows(args.data, target, info.input_shape or [])
        assert labels is not None
        return client.evaluate(
            args.model,
            inputs.tolist(),
            typed_labels(labels, info.task or ""),
            n_samples=args.n_samples,
            seed=args.seed,
            ci_level=args.ci_level,
            ranking_score=args.ranking_score,
        )


def conformal_line(report: ConformalReport) -> str:
    """One line on the model's conformal band or sets: empirical coverage and width or size."""
    spread = (
        f"mean width {report.mean_width:.4g}"
        if report.mean_width is not None
        else f"mean set size {report.mean_set_size:.3f}"
    )
    line = (
        f"conformal (level {report.level:g}): coverage {report.coverage:.4f} "
        f"on {report.rows} rows, {spread}"
    )
    if report.class_coverage:
        shown = ", ".join(f"{c}: {v:.4f}" for c, v in report.class_coverage.items())
        line += f"; per class {shown}"
    if report.empty_sets:
        line += f"; empty sets {report.empty_sets:.1%}"
    return line


def _show(
    response: EvaluateResponse, args: argparse.Namespace, ood: dict[str, Any] | None = None
) -> None:
    """Print the metrics (one JSON document with ``--json``, the OOD comparison under "ood"),
    write the report files when asked."""
    from app.reporting.summary import metric_rows, text_table

    report = response.classification or response.regression or response.segmentation
    assert report is not None
    if args.json:
        text = response.model_dump_json(indent=2)
        if ood is not None:  # one document: the response's own JSON, the comparison beside it
            text = json.dumps({**json.loads(text), "ood": ood}, indent=2)
        print(text)
    else:
        print(
            f"{response.model} v{response.version}: {response.rows} rows, N = {response.n_samples}"
        )
        print(text_table(metric_rows(report)))
        if response.conformal is not None:
            print(conformal_line(response.conformal))
        if ood is not None:
            from app.commands.ood_report import describe_ood

            print(describe_ood(ood, args))
    if args.out is not None:
        from app.reporting.evaluation_report import write_evaluation_report

        about = [
            ("model", f"{response.model} v{response.version} ({response.task})"),
            ("data", str(args.data)),
            ("rows", str(response.rows)),
            ("MC passes N", str(response.n_samples)),
            ("seed", str(response.seed)),
        ]
        title = f"mcdrop evaluation: {response.model}"
        write_evaluation_report(args.out, title, about, report)
        (args.out / "metrics.json").write_text(response.model_dump_json(indent=2) + "\n")
        print(f"wrote the pictures, report.html and metrics.json to {args.out}", file=sys.stderr)
