"""Gal & Ghahramani's evaluation protocol: ``mcdrop evaluate`` of regression rows at N = 10,000.

The 6-50-1 TorchScript MLP of :mod:`bench.regression_row` on a CSV of random rows, timed as the
whole command (load, read, sample, score, print) and as engine stages on the same passes:
  sampling      Predictor.sample_passes of every row
  statistics    regression_stats (mean, variances, CI, mixture PI)
  calibration   the 11 predictive intervals of the calibration curve (mixture quantiles)
  crps          mixture_crps
  report        regression_report (statistics + calibration + CRPS + log-likelihood ...)

    python -m bench.evaluation [--rows 1000] [--passes 10000] [--threads 2]
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import yaml

from app.cli import main as cli_main
from app.engine.evaluation.regression import mixture_crps
from app.engine.evaluation.report import CALIBRATION_LEVELS, regression_report
from app.engine.predictor import PredictionRequest
from app.engine.stats.regression import predictive_interval, regression_stats
from app.registry.loading import load_model_folder
from bench.common import markdown_table
from bench.regression_row import write_model


def write_rows(path: Path, rows: int) -> None:
    """``rows`` random rows of six features and a target column ``y``."""
    generator = torch.Generator().manual_seed(2)
    x = torch.randn(rows, 6, generator=generator)
    y = x.sum(dim=1) * 0.3 + torch.randn(rows, generator=generator) * 0.5
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([f"x{i}" for i in range(6)] + ["y"])
        writer.writerows(
            [*map(float, features), float(t)] for features, t in zip(x, y, strict=True)
        )


def seconds(run: Callable[[], object]) -> float:
    """Wall time of one call (these stages are long; one call each)."""
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--passes", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (2 cores)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        folder = write_model(root)
        card = yaml.safe_load((folder / "model.yaml").read_text())
        card["n_samples"] = {"default": args.passes, "max": args.passes}
        (folder / "model.yaml").write_text(yaml.safe_dump(card))
        data = root / "rows.csv"
        write_rows(data, args.rows)
        command = ["evaluate", "mlp-6-50-1", "--data", str(data), "--models-dir", str(root)]
        command += ["--target", "y", "--n-samples", str(args.passes)]
        times = {"mcdrop evaluate (whole command)": seconds(lambda: cli_main(command))}
        model = load_model_folder(folder)
        inputs = torch.randn(args.rows, 6, generator=torch.Generator().manual_seed(3))
        request = PredictionRequest(inputs, args.passes, ci_level=0.95, seed=0)
        started = time.perf_counter()
        passes = model.predictor.sample_passes(request)
        times["sampling"] = time.perf_counter() - started
        preds, noise = passes.values.double(), passes.noise_variance
        assert isinstance(noise, float)
        targets = preds.mean(dim=0) + 0.3
        times["statistics"] = seconds(lambda: regression_stats(preds, noise, 0.95))
        times["calibration"] = seconds(
            lambda: [predictive_interval(preds, noise, level) for level in CALIBRATION_LEVELS]
        )
        times["crps"] = seconds(lambda: mixture_crps(preds, noise, targets))
        times["report"] = seconds(lambda: regression_report(preds, noise, targets, 0.95))
    times["engine (sampling + report)"] = times["sampling"] + times["report"]
    print(f"\n{args.rows} rows x {args.passes} passes, {args.threads} torch threads")
    print(markdown_table(["stage", "seconds"], [[k, v] for k, v in times.items()]))


if __name__ == "__main__":
    main()
