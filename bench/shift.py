"""Cost of the shift score: the bundled digits models with and without a ``shift`` section.

    python -m bench.shift [--rows 32] [--n-samples 100] [--repeats 30]

Each model is copied to a temporary folder and given a shift detector (``mcdrop calibrate
--ood`` on the first 1400 of scikit-learn's digits; the request's rows are the others); the
plain and the calibrated copy then answer the same request in turns, so both see the same
machine load. The score reuses the prefix pass the
sampling runs anyway, so the difference is the Mahalanobis distance of B rows: medians of
``--repeats`` runs, and their ratio.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from app.cli import main as mcdrop
from app.commands.tabular import write_csv
from app.engine.predictor import PredictionRequest
from app.registry.loading import load_model_folder
from app.registry.served import ServedModel

REPO = Path(__file__).resolve().parent.parent
MODELS = ("digits-mlp", "digits-cnn")


def _calibrated(name: str, work: Path, x: np.ndarray, y: np.ndarray) -> Path:
    """A copy of models/NAME with a shift section fitted on 1000 rows, held out on 400."""
    folder = work / name
    shutil.copytree(REPO / "models" / name, folder)
    columns = [f"pixel{i}" for i in range(64)] + ["digit"]
    for role, rows in (("fit", slice(0, 1000)), ("held", slice(1000, 1400))):
        cells = [[*map(float, r), str(int(d))] for r, d in zip(x[rows], y[rows], strict=True)]
        write_csv(work / f"{role}.csv", columns, cells)
    argv = ["calibrate", str(folder), "--ood", "--in-data", str(work / "fit.csv")]
    if mcdrop([*argv, "--held-out", str(work / "held.csv"), "--target", "digit"]) != 0:
        raise SystemExit("mcdrop calibrate --ood failed")
    return folder


def _median_ms(
    models: dict[str, ServedModel], request: PredictionRequest, repeats: int
) -> dict[str, float]:
    times: dict[str, list[float]] = {key: [] for key in models}
    for _ in range(5):
        for model in models.values():
            model.predictor.predict(request)
    for _ in range(repeats):
        for key, model in models.items():
            started = time.perf_counter()
            model.predictor.predict(request)
            times[key].append(time.perf_counter() - started)
    return {key: statistics.median(values) * 1000 for key, values in times.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=32)
    parser.add_argument("--n-samples", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    from sklearn.datasets import load_digits

    data = load_digits()
    x_all, y_all = data.data.astype(np.float32), data.target
    x_train, x_test, y_train = x_all[:1400], x_all[1400:], y_all[:1400]
    with tempfile.TemporaryDirectory() as tmp:
        for name in MODELS:
            plain = load_model_folder(REPO / "models" / name)
            shifted = load_model_folder(_calibrated(name, Path(tmp), x_train, y_train))
            x = torch.from_numpy(x_test[: args.rows]).reshape(-1, *plain.card.input.shape)
            request = PredictionRequest(x, args.n_samples, 0.95, seed=0)
            med = _median_ms({"plain": plain, "shift": shifted}, request, args.repeats)
            print(
                f"{name}: {args.rows} rows, N = {args.n_samples}: plain {med['plain']:.2f} ms, "
                f"with shift {med['shift']:.2f} ms, ratio {med['shift'] / med['plain']:.3f}"
            )


if __name__ == "__main__":
    main()
