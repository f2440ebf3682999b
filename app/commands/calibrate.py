"""``mcdrop calibrate``: pick a model's abstention threshold from in-distribution data.

Classification rows abstain on a row statistic; segmentation images on their mean (or
foreground) mutual information, from an ``.npz`` of images (``--data eval.npz``).

The threshold on the chosen score keeps ``--keep`` of the ``--in-data`` rows; it is written to
the card's ``abstention`` section (the rest of the card, weights checksum included, is kept),
so every prediction of the served model then carries ``abstain``. With ``--ood-data`` the
command also reports how well each score separates the two sets (AUROC).

With ``--conformal`` it instead takes labelled ``--in-data`` rows not used in training and
writes a split-conformal ``conformal`` section at ``--level`` (regression or classification).
With ``--ood`` it fits the distribution-shift detector (:mod:`app.commands.shift`).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    from torch import Tensor

    from app.engine.evaluation.calibration import Calibration
    from app.engine.stats import ClassificationStats
    from app.registry.served import ServedModel


ABSTENTION_CHOICES = (
    "mutual_information",
    "predictive_entropy",
    "variation_ratio",
    "mean_mutual_information",
    "foreground_mutual_information",
)
"""Every task's abstention scores (``app.engine.abstention.TASK_ABSTENTION_SCORES``)."""
IMAGE_CHUNK = 32
"""Images per local request when calibrating a segmentation model."""
SET_CHOICES = ("lac", "aps", "raps")
DEFAULT_SET_SCORE = "lac"
"""Chosen by the smallest mean set size at the nominal coverage on the bundled classifiers
(docs/shift-example.md, "Which conformal score")."""


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``calibrate`` sub-command."""
    calibrate = commands.add_parser(
        "calibrate", help="set a model's abstention threshold from in-distribution data"
    )
    calibrate.add_argument("model", help="model name (its folder under --models-dir) or folder")
    calibrate.add_argument(
        "--in-data",
        "--data",
        dest="in_data",
        type=Path,
        required=True,
        help="CSV of in-distribution rows; segmentation: an .npz file of 'inputs' (B, C, H, W)",
    )
    calibrate.add_argument(
        "--ood-data", type=Path, help="CSV (segmentation: .npz) of out-of-distribution rows"
    )
    calibrate.add_argument(
        "--score",
        choices=[*ABSTENTION_CHOICES, *SET_CHOICES],
        help="abstention: the uncertainty score to threshold (default: mutual_information; "
        "segmentation: mean_mutual_information, or foreground_mutual_information); "
        f"--conformal classification: the set score (default: {DEFAULT_SET_SCORE})",
    )
    calibrate.add_argument(
        "--keep", type=float, default=0.95, help="share of in-distribution rows to keep"
    )
    calibrate.add_argument(
        "--refer",
        type=float,
        help="share of the rows to refer (abstain on), the most uncertain first: --keep 1 - R",
    )
    calibrate.add_argument(
        "--retained-accuracy",
        type=float,
        help="refer the fewest rows such that the rest reach this accuracy (needs --target)",
    )
    calibrate.add_argument("--models-dir", type=Path, default=Path("models"))
    calibrate.add_argument("--n-samples", type=int, help="MC passes (default: the model's)")
    calibrate.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    calibrate.add_argument("--target", help="label column to leave out (default: the card's)")
    calibrate.add_argument(
        "--dry-run", action="store_true", help="report the threshold, leave the card alone"
    )
    calibrate.add_argument("--json", action="store_true", help="print the result as JSON")
    calibrate.add_argument(
        "--conformal",
        action="store_true",
        help="write a split-conformal section from labelled --in-data instead of abstention",
    )
    calibrate.add_argument(
        "--level", type=float, default=0.9, help="conformal coverage level (default 0.9)"
    )
    calibrate.add_argument(
        "--mondrian", action="store_true", help="--conformal: one threshold per class"
    )
    calibrate.add_argument(
        "--randomized", action="store_true", help="--conformal: randomised APS/RAPS sets"
    )
    calibrate.add_argument(
        "--penalty", type=float, default=0.01, help="--conformal raps: λ (default 0.01)"
    )
    calibrate.add_argument(
        "--k-reg", type=int, default=1, help="--conformal raps: unpenalised ranks (default 1)"
    )
    calibrate.add_argument(
        "--ood",
        action="store_true",
        help="fit the shift detector on labelled training --in-data instead of abstention",
    )
    calibrate.add_argument(
        "--held-out", type=Path, help="--ood: in-distribution rows not trained on (threshold)"
    )
    calibrate.add_argument(
        "--false-alarm",
        type=float,
        default=0.05,
        help="--ood: share of held-out rows to flag (default 0.05)",
    )
    calibrate.add_argument(
        "--margin",
        type=float,
        default=1.0,
        help="--ood: flag inputs this many training stds outside their range (default 1)",
    )
    calibrate.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Calibrate, report, and write the card's abstention section."""
    from app.commands._output import EXIT_PROBLEM, EXIT_USAGE
    from app.commands.tabular import TableError
    from app.errors import InvalidInputError, McdropError

    if args.conformal:
        from app.commands.conformal import run_conformal

        return run_conformal(args)
    if args.ood:
        from app.commands.shift import run_shift

        return run_shift(args)
    if args.score is not None and args.score not in ABSTENTION_CHOICES:
        print(f"mcdrop calibrate: --score {args.score} is a conformal score", file=sys.stderr)
        return EXIT_USAGE
    if args.refer is not None:
        if not 0.0 <= args.refer < 1.0:
            print("mcdrop calibrate: --refer must be in [0, 1)", file=sys.stderr)
            return EXIT_USAGE
        args.keep = 1.0 - args.refer
    if not 0.0 < args.keep <= 1.0:
        print("mcdrop calibrate: --keep must be in (0, 1]", file=sys.stderr)
        return EXIT_USAGE
    try:
        result, folder, n_samples = _calibrate(args)
    except (TableError, InvalidInputError, ValueError) as exc:
        print(f"mcdrop calibrate: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except McdropError as exc:  # the model folder cannot be loaded
        print(f"mcdrop calibrate: {exc}", file=sys.stderr)
        return EXIT_PROBLEM
    print(json.dumps(asdict(result), indent=2) if args.json else _describe(result))
    if not args.dry_run:
        _write_abstention(folder, result, args.in_data.name, n_samples)
        print(f"wrote the abstention section to {folder / 'model.yaml'}", file=sys.stderr)
    return 0


def _calibrate(args: argparse.Namespace) -> tuple[Calibration, Path, int]:
    """The calibration, the model folder and the number of MC passes used."""
    from app.commands._shared import model_folder
    from app.commands.tabular import feature_rows
    from app.engine.evaluation.calibration import calibrate
    from app.registry.loading import load_model_folder

    folder = model_folder(args.models_dir, args.model)
    model = load_model_folder(folder)
    args.score = _score(args.score, model.card.task)
    label = args.target or model.card.target
    shape = model.card.input.shape
    n_samples = args.n_samples or model.card.n_samples.default
    if model.card.task == "segmentation":
        return _for_images(args, model, n_samples), folder, n_samples
    if args.retained_accuracy is not None:
        return _for_accuracy(args, model, label, n_samples), folder, n_samples
    in_stats = _stats(model, feature_rows(args.in_data, shape, label), n_samples, args.seed)
    out_stats = None
    if args.ood_data is not None:
        out_rows = feature_rows(args.ood_data, shape, label)
        out_stats = _stats(model, out_rows, n_samples, args.seed)
    return calibrate(in_stats, args.score, args.keep, out_stats), folder, n_samples


def _score(score: str | None, task: str) -> str:
    """The abstention score asked for, or the task's default; 422 for one it lacks."""
    from app.engine.abstention import TASK_ABSTENTION_SCORES
    from app.errors import InvalidInputError

    scores = TASK_ABSTENTION_SCORES.get(task)
    if scores is None:
        raise InvalidInputError(
            "model", "abstention applies to classification and segmentation models only"
        )
    if score is not None and score not in scores:
        raise InvalidInputError("--score", f"a {task} model abstains on {', '.join(scores)}")
    return score or scores[0]


def _for_images(args: argparse.Namespace, model: ServedModel, n_samples: int) -> Calibration:
    """Segmentation: the threshold on each image's mean (or foreground) mutual information
    keeping ``--keep`` of the ``--data`` images; with ``--ood-data`` images, AUROC of both."""
    from app.engine.abstention import TASK_ABSTENTION_SCORES
    from app.engine.evaluation.calibration import calibrate_scores

    if args.retained_accuracy is not None:
        raise ValueError("--retained-accuracy applies to classification models; use --refer")
    names = TASK_ABSTENTION_SCORES["segmentation"]

    def scores(path: Path) -> dict[str, Tensor]:
        import torch

        inputs = image_rows(path)
        # Chunks bound the per-pixel maps held; masks depend on (seed, pass), not the chunk.
        chunks = [
            _predicted(model, inputs[start : start + IMAGE_CHUNK], n_samples, args.seed)
            for start in range(0, inputs.shape[0], IMAGE_CHUNK)
        ]
        return {name: torch.cat([getattr(s, name) for s in chunks]) for name in names}

    out_scores = scores(args.ood_data) if args.ood_data is not None else None
    return calibrate_scores(args.score, args.keep, scores(args.in_data), out_scores)


def image_rows(path: Path) -> np.ndarray:
    """(B, C, H, W) float64 images of an ``.npz`` file's ``inputs`` array (``masks``, as
    ``mcdrop evaluate`` takes them, may be there too: unused)."""
    import numpy as np

    from app.commands.tabular import TableError

    try:
        with np.load(path, allow_pickle=False) as arrays:
            inputs = arrays["inputs"]
    except (OSError, KeyError, ValueError) as exc:
        raise TableError(f"{path}: not an .npz file of 'inputs' (B, C, H, W): {exc}") from None
    if inputs.ndim != 4 or inputs.shape[0] < 1:
        raise TableError(f"{path}: inputs {inputs.shape} are not (B, C, H, W) images")
    rows: np.ndarray = inputs.astype(np.float64)
    return rows


def _for_accuracy(
    args: argparse.Namespace, model: ServedModel, label: str | None, n_samples: int
) -> Calibration:
    """The threshold reaching ``--retained-accuracy`` on the labelled ``--in-data``."""
    from app.commands.evaluate import typed_labels
    from app.commands.tabular import TableError, labelled_rows
    from app.engine.evaluation import parse_targets
    from app.engine.evaluation.calibration import calibrate_for_accuracy

    if label is None:
        raise TableError("--retained-accuracy needs labels: name their column with --target")
    inputs, labels = labelled_rows(args.in_data, label, model.card.input.shape)
    assert labels is not None
    spec = model.predictor.spec
    cells = typed_labels(labels, spec.task)
    targets = parse_targets(cells, spec, model.card.labels, model.output_shape)
    stats = _stats(model, inputs, n_samples, args.seed)
    return calibrate_for_accuracy(stats, args.score, targets, args.retained_accuracy)


def _stats(
    model: ServedModel, inputs: np.ndarray, n_samples: int, seed: int
) -> ClassificationStats:
    from app.engine.stats import ClassificationStats

    stats = _predicted(model, inputs, n_samples, seed)
    assert isinstance(stats, ClassificationStats)
    return stats


def _predicted(model: ServedModel, inputs: np.ndarray, n_samples: int, seed: int) -> Any:
    """The statistics of one local request of every row (one seed: the served masks)."""
    import torch

    from app.dataplane.policy import local_request

    request = local_request(model, torch.from_numpy(inputs), n_samples=n_samples, seed=seed)
    return model.predictor.predict(request).stats


def _describe(result: Calibration) -> str:
    from app.commands.tables import table

    lines = [
        f"threshold on {result.score}: {result.threshold:.6g} keeps "
        f"{result.in_kept:.1%} of {result.in_rows} in-distribution rows (target {result.keep:.1%})"
        f", refers {1 - result.in_kept:.1%}"
    ]
    if result.retained_accuracy is not None:
        lines.append(
            f"accuracy of the rows kept: {result.retained_accuracy:.4f} "
            f"(target {result.target_accuracy:g})"
        )
    if result.auroc is not None and result.out_flagged is not None:
        lines.append(f"it flags {result.out_flagged:.1%} of {result.out_rows} OOD rows")
        lines.append("AUROC in-distribution vs OOD (1 = perfect, 0.5 = chance):")
        scores = table(None, [[name, f"{value:.4f}"] for name, value in result.auroc.items()])
        lines += ["  " + line for line in scores.splitlines()]
    return "\n".join(lines)


def _write_abstention(folder: Path, result: Calibration, data: str, n_samples: int) -> None:
    import yaml

    from app.registry.card import CARD_FILE, write_card

    document = yaml.safe_load((folder / CARD_FILE).read_text())
    document["abstention"] = {
        "score": result.score,
        "threshold": result.threshold,
        "in_distribution_share": result.keep,
        "calibrated_on": data,
        "n_samples": n_samples,
    }
    write_card(folder, document)
