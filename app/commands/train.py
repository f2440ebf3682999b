"""``mcdrop train``: train a dropout MLP on a CSV file and write a servable model folder.

Several values for ``--dropout``, ``--length-scale`` or ``--tau`` make a grid: each point is
scored on a validation split (mean MC log-likelihood) and the best is refitted on every row.
Regression fits τ on that split unless ``--tau`` is given, and reports the chosen model's
held-out RMSE, log-likelihood and 95% predictive-interval coverage.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import Tensor

    from app.registry.card import RegressionSpec
    from app.training import ProgressBar


DEFAULT_DROPOUTS: tuple[float, ...] = (0.05, 0.1)
"""Dropout rates searched by default for regression; the evidence is
docs/calibration-defaults.md."""
CLASSIFICATION_DROPOUT = 0.1
DEFAULT_LENGTH_SCALES: tuple[float, ...] = (0.01, 1.0)
"""Prior length-scales searched by default."""


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``train`` sub-command."""
    train = commands.add_parser("train", help="train a dropout MLP and write a model folder")
    train.add_argument("--data", type=Path, required=True, help="CSV file with a header row")
    train.add_argument("--target", required=True, help="label (or regression target) column")
    train.add_argument("--task", required=True, choices=["classification", "regression"])
    train.add_argument("--out", type=Path, required=True, help="model folder, e.g. models/NAME")
    train.add_argument("--hidden", type=int, nargs="+", default=[64, 64], help="layer widths")
    grid = "; several values make a grid searched on a validation split"
    train.add_argument(
        "--dropout",
        type=float,
        nargs="+",
        help=f"rate (default: 0.05 0.1 for regression, 0.1 for classification){grid}",
    )
    train.add_argument(
        "--length-scale",
        type=float,
        nargs="+",
        default=list(DEFAULT_LENGTH_SCALES),
        help=f"prior length-scale{grid}",
    )
    train.add_argument(
        "--tau",
        type=float,
        nargs="+",
        default=None,
        help="noise precision of standardised targets (regression; default: fitted on the "
        f"validation split by MC log-likelihood){grid}",
    )
    train.add_argument(
        "--noise",
        choices=["homoscedastic", "heteroscedastic"],
        default="homoscedastic",
        help="regression: one fitted noise level, or a variance head (Gaussian NLL)",
    )
    train.add_argument("--epochs", type=int, default=200)
    train.add_argument("--batch-size", type=int, default=64)
    train.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    train.add_argument("--val-fraction", type=float, default=0.2, help="validation share")
    train.add_argument("--min-std", type=float, default=0.0, help="floor for input stds")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--force", action="store_true", help="replace an existing model folder")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Read the data, train (with a grid search when asked), write and reload the folder."""
    from app.commands.tabular import TableError
    from app.errors import McdropError

    if (args.out / "model.yaml").exists() and not args.force:
        print(f"mcdrop train: {args.out} already holds a model (use --force)", file=sys.stderr)
        return 2
    if args.task == "classification" and (args.tau is not None or args.noise != "homoscedastic"):
        print("mcdrop train: --tau and --noise apply to regression only", file=sys.stderr)
        return 2
    if args.noise == "heteroscedastic" and args.tau is not None:
        print("mcdrop train: --tau and --noise heteroscedastic exclude each other", file=sys.stderr)
        return 2
    try:
        return _train(args)
    except (TableError, McdropError, ValueError) as exc:
        print(f"mcdrop train: {exc}", file=sys.stderr)
        return 2


def _train(args: argparse.Namespace) -> int:
    import torch

    from app.commands.tabular import read_csv
    from app.training import TrainConfig, hyper_grid, train, write_model_folder
    from app.training.search import hyper_label

    # Small MLPs train fastest on one thread; more threads mostly add synchronisation.
    torch.set_num_threads(1)
    columns = read_csv(args.data).columns
    features = [name for name in columns if name != args.target]
    x, y, labels = _dataset(args.data, args.target, len(features), args.task)
    config = TrainConfig(
        hidden=tuple(args.hidden),
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        min_feature_std=args.min_std,
        noise=args.noise,
    )
    taus = args.tau if args.tau is not None else [1.0 if args.task == "classification" else None]
    dropouts = args.dropout or (
        list(DEFAULT_DROPOUTS) if args.task == "regression" else [CLASSIFICATION_DROPOUT]
    )
    grid = hyper_grid(dropouts, args.length_scale, taus)
    outputs = len(labels) if labels is not None else 1
    bars = None if args.quiet else _bar
    trained = train(args.task, x, y, outputs, grid, config, args.val_fraction, bars)
    served = write_model_folder(
        args.out,
        trained,
        args.task,
        labels=labels,
        features=features,
        target=args.target,
        data=args.data.name,
        config=config,
    )
    for (hyper, score), noise in zip(trained.validation, trained.fitted_noise, strict=True):
        fitted = f" ({1 / noise:.4g} in target units)" if noise is not None else ""
        print(f"validation log-likelihood {score:.4f}  {hyper_label(hyper)}{fitted}")
    if trained.check is not None:
        check = trained.check
        print(
            f"validation ({check.rows} rows): RMSE {check.rmse:.4g}, log-likelihood "
            f"{check.log_likelihood:.4f}, 95% PI coverage {check.pi_coverage:.3f}"
        )
    print(
        f"trained {served.name}: {trained.rows} rows, dropout {trained.hyper.dropout:g}, "
        f"length-scale {trained.hyper.length_scale:g}, {_noise(served.card.regression)}, "
        f"weight decay {trained.weight_decay:.3g}; wrote {args.out}"
    )
    return 0


def _noise(regression: RegressionSpec | None) -> str:
    if regression is None:
        return "classification"
    if regression.variance_head:
        return "variance head"
    return f"tau {regression.tau:.6g} (target units)"


def _bar(label: str, total: int) -> ProgressBar:
    from app.training import ProgressBar

    return ProgressBar(total, label)


def _dataset(
    path: Path, target: str, features: int, task: str
) -> tuple[Tensor, Tensor, list[str] | None]:
    """(x (B, F) float32, y, labels): y is (B,) class indices with the sorted labels, or
    (B, 1) float32 regression targets with labels None."""
    import torch

    from app.commands.tabular import TableError, labelled_rows

    inputs, cells = labelled_rows(path, target, [features])
    assert cells is not None
    x = torch.from_numpy(inputs).float()
    if task == "classification":
        labels = sorted(set(cells), key=_label_order)
        if len(labels) < 2:
            raise TableError(f"{path}: column '{target}' holds fewer than two classes")
        index = {label: i for i, label in enumerate(labels)}
        return x, torch.tensor([index[cell] for cell in cells]), labels
    try:
        values = [float(cell) for cell in cells]
    except ValueError as exc:
        raise TableError(f"{path}: regression targets must be numbers ({exc})") from None
    return x, torch.tensor(values).unsqueeze(1), None


def _label_order(label: str) -> tuple[int, float, str]:
    """Numbers in numeric order first, then text in alphabetical order."""
    try:
        return (0, float(label), "")
    except ValueError:
        return (1, 0.0, label)
