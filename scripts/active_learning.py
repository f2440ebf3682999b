"""Worked example: active learning on scikit-learn's digits with mcdrop's ranking.

Start from 50 labelled digits, then for 10 rounds pick 20 more from the unlabelled pool with
``bald``, ``batchbald`` or at random, retrain (the training code of ``mcdrop train``: a dropout
MLP written as a model folder and loaded as the server loads it) and measure test accuracy.
Three seeds per strategy; the plot shows the mean and the spread (min..max) against labels used.

    python scripts/active_learning.py [--out docs/active-learning] [--seeds 0 1 2]

Steps, each a function: ``split`` (test set, first labels, pool), ``train_round`` (one model
folder per round, loaded once), ``acquire`` (the strategy's picks from the pool),
``run_strategy`` (the rounds of one strategy and seed), ``plot``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from app.dataplane.policy import local_request
from app.engine.ranking import rank
from app.engine.stats import ClassificationStats
from app.registry.served import ServedModel
from app.training import TrainConfig, hyper_grid, train, write_model_folder

StrategyId = Literal["bald", "batchbald", "random"]
STRATEGIES: tuple[StrategyId, ...] = ("bald", "batchbald", "random")
LABELS = [str(digit) for digit in range(10)]
FEATURES = [f"p{i}" for i in range(64)]


@dataclass(frozen=True)
class Settings:
    """The experiment's sizes (the defaults are the documented run)."""

    initial: int = 50
    per_round: int = 20
    rounds: int = 10
    test_rows: int = 500
    n_samples: int = 100
    dropout: float = 0.25
    epochs: int = 200
    hidden: tuple[int, ...] = (64, 64)


@dataclass(frozen=True)
class Split:
    """Row indices into the digits data set."""

    test: np.ndarray
    labelled: np.ndarray
    pool: np.ndarray


def split(rows: int, settings: Settings, seed: int) -> Split:
    """A random test set, ``initial`` random labelled rows, the rest as the pool."""
    order = np.random.default_rng(seed).permutation(rows)
    test, rest = order[: settings.test_rows], order[settings.test_rows :]
    return Split(test, rest[: settings.initial], rest[settings.initial :])


def train_round(
    x: np.ndarray, y: np.ndarray, folder: Path, settings: Settings, seed: int
) -> ServedModel:
    """Train a dropout MLP as ``mcdrop train`` does, write its folder, load it once."""
    config = TrainConfig(hidden=settings.hidden, epochs=settings.epochs, seed=seed)
    grid = hyper_grid([settings.dropout], [0.01], [1.0])
    inputs, targets = torch.from_numpy(x).float(), torch.from_numpy(y).long()
    trained = train("classification", inputs, targets, len(LABELS), grid, config)
    return write_model_folder(
        folder, trained, "classification", labels=LABELS, features=FEATURES,
        target="digit", data="digits", config=config,
    )  # fmt: skip


def accuracy(model: ServedModel, x: np.ndarray, y: np.ndarray, settings: Settings) -> float:
    """Accuracy of the MC mean prediction (argmax of the mean probabilities)."""
    request = local_request(
        model, torch.from_numpy(x).float(), n_samples=settings.n_samples, seed=0
    )
    stats = model.predictor.predict(request).stats
    assert isinstance(stats, ClassificationStats)
    return float((stats.predicted_class.numpy() == y).mean())


def acquire(
    strategy: StrategyId, model: ServedModel, pool: np.ndarray, settings: Settings, seed: int
) -> list[int]:
    """Positions in ``pool`` (its rows, (P, 64)) of the rows to label next."""
    if strategy == "random":
        chosen = np.random.default_rng(seed).choice(len(pool), settings.per_round, replace=False)
        return [int(i) for i in chosen]
    inputs = torch.from_numpy(pool).float()
    request = local_request(model, inputs, n_samples=settings.n_samples, seed=seed)
    picked = rank(model.predictor, request, strategy, settings.per_round)
    return picked.selected


def run_strategy(
    strategy: StrategyId, seed: int, data: tuple[np.ndarray, np.ndarray], settings: Settings
) -> list[tuple[int, float]]:
    """(labels used, test accuracy) after the first training and after every round."""
    x, y = data
    rows = split(len(x), settings, seed)
    labelled, pool = list(rows.labelled), list(rows.pool)
    curve = []
    with tempfile.TemporaryDirectory() as folder:
        for round_ in range(settings.rounds + 1):
            model = train_round(
                x[labelled], y[labelled], Path(folder) / f"round{round_}", settings, seed
            )
            curve.append((len(labelled), accuracy(model, x[rows.test], y[rows.test], settings)))
            if round_ == settings.rounds:
                break
            picks = acquire(strategy, model, x[pool], settings, seed * 1000 + round_)
            chosen = set(picks)
            labelled += [pool[i] for i in picks]
            pool = [row for i, row in enumerate(pool) if i not in chosen]
    return curve


def plot(results: dict[str, list[list[tuple[int, float]]]], path: Path) -> None:
    """Mean accuracy against labels used, with the min..max band over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6.4, 4.2))
    for strategy, curves in results.items():
        labels = [count for count, _ in curves[0]]
        values = np.array([[acc for _, acc in curve] for curve in curves])
        axes.plot(labels, values.mean(axis=0), marker="o", markersize=3, label=strategy)
        axes.fill_between(labels, values.min(axis=0), values.max(axis=0), alpha=0.2)
    axes.set_xlabel("labelled digits")
    axes.set_ylabel("test accuracy (500 digits)")
    axes.set_title(f"digits, dropout MLP, 20 labels a round ({len(curves)} seeds, min..max)")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def summary(results: dict[str, list[list[tuple[int, float]]]]) -> str:
    """A Markdown table: mean (min..max) accuracy per strategy at a few label counts."""
    first = next(iter(results.values()))[0]
    columns = [0, len(first) // 2, len(first) - 1]
    header = "| strategy | " + " | ".join(f"{first[c][0]} labels" for c in columns) + " |"
    lines = [header, "|---|" + "---|" * len(columns)]
    for strategy, curves in results.items():
        cells = []
        for c in columns:
            values = [curve[c][1] for curve in curves]
            cells.append(f"{statistics.mean(values):.3f} ({min(values):.3f}..{max(values):.3f})")
        lines.append(f"| {strategy} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Active learning on digits with mcdrop.")
    parser.add_argument("--out", type=Path, default=Path("docs/active-learning"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rounds", type=int, default=Settings.rounds)
    parser.add_argument("--epochs", type=int, default=Settings.epochs)
    parser.add_argument("--strategies", nargs="+", choices=STRATEGIES, default=list(STRATEGIES))
    args = parser.parse_args(argv)
    from sklearn.datasets import load_digits

    torch.set_num_threads(1)
    digits = load_digits()
    data = (digits.data.astype(np.float32), digits.target.astype(np.int64))
    settings = Settings(rounds=args.rounds, epochs=args.epochs)
    started = time.perf_counter()
    results = {
        strategy: [run_strategy(strategy, seed, data, settings) for seed in args.seeds]
        for strategy in args.strategies
    }
    args.out.mkdir(parents=True, exist_ok=True)
    record = {"settings": asdict(settings), "seeds": args.seeds, "results": results}
    (args.out / "results.json").write_text(json.dumps(record, indent=1) + "\n")
    plot(results, args.out / "accuracy.png")
    print(summary(results))
    print(f"{time.perf_counter() - started:.0f} s; wrote {args.out}")


if __name__ == "__main__":
    main()
