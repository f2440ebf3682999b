"""Worked example: does MC dropout notice digits it was never shown? Train on 0-4, test on 5-9.

Reproducible end to end with the commands a user would run (about half a minute on 2 cores):
1. `mcdrop train` fits a dropout MLP on the digits 0-4 of the demo models' training split
   (80% of it; the other 20% is kept for calibration) and writes `models-extra/digits-0to4-mlp`;
2. `mcdrop calibrate` sets its abstention threshold on mutual information so that 95% of the
   held-out digits 0-4 pass;
3. the model is served in process (the real app and routes) and scored on the test split:
   OOD AUROC of digits 5-9 against 0-4 for mutual information, predictive entropy, variation
   ratio and the softmax confidence of one deterministic pass (dropout off), the calibration
   metrics of one deterministic pass, one MC pass and 100 MC passes, and the abstention rates;
4. the tables go to `docs/ood-example.md`, the pictures to `docs/ood-example/`.

Usage: `python scripts/ood_example.py [--models-dir models-extra] [--docs-dir docs]`.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from fastapi.testclient import TestClient
from torch import Tensor
from train_demo_models import digits_split

from app.api.schemas import EvaluateResponse
from app.cli import main as mcdrop
from app.commands.tabular import write_csv
from app.config import load_settings
from app.dataplane.policy import local_request
from app.engine.evaluation import (
    ClassificationReport,
    Histogram,
    RiskCoverage,
    auroc,
    classification_report,
    evaluate,
    risk_coverage_curve,
    roc_curve,
)
from app.engine.evaluation.report import histogram
from app.engine.stats import classification_stats
from app.main import create_app
from app.registry.loading import load_model_folder
from app.reporting import figures
from app.training import Hyper, TrainConfig, fit
from app.training.mlp import mc_passes

NAME = "digits-0to4-mlp"
IN_CLASSES = 5
SEED = 0
PASSES = 100
CALIBRATION_FRACTION = 0.2
KEEP = 0.95
DROPOUT = 0.3
EPOCHS = 100
SENSITIVITY_RATES = (0.1, 0.3, 0.5)
MIXED_SCORES = (
    f"mutual information (N = {PASSES})",
    f"predictive entropy (N = {PASSES})",
    "1 - max softmax, 1 deterministic pass",
)
TRAIN_FLAGS = ["--hidden", "128", "128", "--dropout", str(DROPOUT), "--epochs", str(EPOCHS)]
TRAIN_FLAGS += ["--min-std", "1", "--seed", str(SEED), "--quiet"]
PIXELS = [f"pixel{i}" for i in range(64)]


@dataclass(frozen=True)
class Split:
    """The rows of one role: images (B, 64) raw pixels and digits (B,)."""

    x: np.ndarray
    y: np.ndarray


def splits() -> dict[str, Split]:
    """fit / calibration (digits 0-4 of the training split), test_in (0-4), test_out (5-9)."""
    x_train, x_test, y_train, y_test = digits_split()
    seen = y_train < IN_CLASSES
    x_seen, y_seen = x_train[seen], y_train[seen]
    order = np.random.default_rng(SEED).permutation(len(y_seen))
    held = order[: int(len(order) * CALIBRATION_FRACTION)]
    kept = order[int(len(order) * CALIBRATION_FRACTION) :]
    return {
        "fit": Split(x_seen[kept], y_seen[kept]),
        "calibration": Split(x_seen[held], y_seen[held]),
        "test_in": Split(x_test[y_test < IN_CLASSES], y_test[y_test < IN_CLASSES]),
        "test_out": Split(x_test[y_test >= IN_CLASSES], y_test[y_test >= IN_CLASSES]),
    }


def _csv(path: Path, split: Split) -> Path:
    rows = [[*map(float, r), int(d)] for r, d in zip(split.x, split.y, strict=True)]
    write_csv(path, [*PIXELS, "digit"], rows)
    return path


def train_and_calibrate(data: dict[str, Split], models_dir: Path, work: Path) -> Path:
    """Run `mcdrop train` then `mcdrop calibrate`; returns the model folder."""
    folder = models_dir / NAME
    fit_csv = _csv(work / "digits-0to4-fit.csv", data["fit"])
    calibration_csv = _csv(work / "digits-0to4-calibration.csv", data["calibration"])
    train = ["train", "--data", str(fit_csv), "--target", "digit", "--task", "classification"]
    if mcdrop([*train, "--out", str(folder), "--force", *TRAIN_FLAGS]) != 0:
        raise SystemExit("mcdrop train failed")
    calibrate = ["calibrate", str(folder), "--in-data", str(calibration_csv)]
    calibrate += ["--keep", str(KEEP), "--n-samples", str(PASSES), "--seed", str(SEED)]
    if mcdrop(calibrate) != 0:
        raise SystemExit("mcdrop calibrate failed")
    return folder


def _predict(client: TestClient, x: np.ndarray) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for start in range(0, len(x), 256):
        body = {"inputs": x[start : start + 256].tolist(), "n_samples": PASSES, "seed": SEED}
        response = client.post(f"/v1/models/{NAME}/predict", json=body)
        response.raise_for_status()
        rows += response.json()["predictions"]
    return rows


def _evaluate(client: TestClient, split: Split, n_samples: int) -> ClassificationReport:
    body = {"inputs": split.x.tolist(), "targets": split.y.tolist(), "n_samples": n_samples}
    response = client.post(f"/v1/models/{NAME}/evaluate", json={**body, "seed": SEED})
    response.raise_for_status()
    report = EvaluateResponse.model_validate(response.json()).classification
    assert report is not None
    return report


def deterministic_probs(folder: Path, x: np.ndarray) -> torch.Tensor:
    """(1, B, C) softmax of one pass with dropout off (the plain network, no sampling)."""
    module = load_model_folder(folder).module
    with torch.inference_mode():
        return torch.softmax(module(torch.from_numpy(x).float()), dim=-1)[None].double()


def _scores(rows: list[dict[str, Any]], key: str) -> torch.Tensor:
    return torch.tensor([row[key] for row in rows], dtype=torch.float64)


@dataclass(frozen=True)
class Results:
    """Everything the document reports."""

    sizes: dict[str, int]
    calibration: dict[str, ClassificationReport]
    bundled_calibration: dict[str, ClassificationReport]
    aurocs: dict[str, float]
    rocs: dict[str, tuple[list[float], list[float], float]]
    abstention: dict[str, float]
    histograms: dict[str, Histogram]
    sensitivity: dict[float, dict[str, float]]
    mixed: dict[str, RiskCoverage]
    """Risk-coverage on every test digit (unseen ones count as errors), per ranking score."""


def _calibration_reports(
    client: TestClient, folder: Path, split: Split
) -> dict[str, ClassificationReport]:
    """Deterministic pass (local), 1 and PASSES MC passes (over HTTP) on the seen test digits."""
    targets = torch.from_numpy(split.y)
    return {
        "1 deterministic pass": classification_report(
            deterministic_probs(folder, split.x), targets
        ),
        "1 MC pass": _evaluate(client, split, 1),
        f"{PASSES} MC passes": _evaluate(client, split, PASSES),
    }


def bundled_calibration(models: Path) -> dict[str, ClassificationReport]:
    """The same three rows for the bundled 10-class digits-mlp on its 450 test images."""
    _, x_test, _, y_test = digits_split()
    model = load_model_folder(models / "digits-mlp")
    targets = torch.from_numpy(y_test)
    reports = {
        "1 deterministic pass": classification_report(
            deterministic_probs(model.folder, x_test), targets
        )
    }
    for passes in (1, PASSES):
        request = local_request(model, torch.from_numpy(x_test), n_samples=passes, seed=SEED)
        result = evaluate(model.predictor, request, targets).classification
        assert result is not None
        reports[f"{passes} MC pass{'es' if passes > 1 else ''}"] = result
    return reports


def _ood_scores(
    rows_in: list[dict[str, Any]], rows_out: list[dict[str, Any]], plain: tuple[Tensor, Tensor]
) -> dict[str, tuple[Tensor, Tensor]]:
    """Score name -> (in-distribution scores, OOD scores), higher = more likely unseen."""
    named = {
        f"mutual information (N = {PASSES})": "mutual_information",
        f"predictive entropy (N = {PASSES})": "predictive_entropy",
        f"variation ratio (N = {PASSES})": "variation_ratio",
    }
    pairs = {label: (_scores(rows_in, key), _scores(rows_out, key)) for label, key in named.items()}
    pairs[f"1 - max mean probability (N = {PASSES})"] = (
        1 - _scores(rows_in, "confidence"),
        1 - _scores(rows_out, "confidence"),
    )
    pairs["1 - max softmax, 1 deterministic pass"] = (
        1 - plain[0].max(-1).values,
        1 - plain[1].max(-1).values,
    )
    return pairs


def _right(rows: list[dict[str, Any]], digits: np.ndarray) -> Tensor:
    return torch.tensor([row["predicted_class"] for row in rows]) == torch.from_numpy(digits)


def _abstention(
    folder: Path, rows_in: list[dict[str, Any]], rows_out: list[dict[str, Any]], y_in: np.ndarray
) -> dict[str, float]:
    flags_in = torch.tensor([row["abstain"] for row in rows_in])
    flags_out = torch.tensor([row["abstain"] for row in rows_out])
    right = _right(rows_in, y_in)
    card = load_model_folder(folder).card
    assert card.abstention is not None
    return {
        "threshold": card.abstention.threshold,
        "in": float(flags_in.double().mean()),
        "out": float(flags_out.double().mean()),
        "kept_accuracy": float(right[~flags_in].double().mean()),
    }


def _in_out_histograms(pairs: dict[str, tuple[Tensor, Tensor]]) -> dict[str, Histogram]:
    result = {}
    for key, label in (
        ("mutual_information", f"mutual information (N = {PASSES})"),
        ("predictive_entropy", f"predictive entropy (N = {PASSES})"),
    ):
        seen, unseen = pairs[label]
        is_in = torch.arange(len(seen) + len(unseen)) < len(seen)
        groups = {"digits 0-4 (seen)": is_in, "digits 5-9 (never seen)": ~is_in}
        result[key] = histogram(torch.cat([seen, unseen]), groups)
    return result


def sensitivity(data: dict[str, Split]) -> dict[float, dict[str, float]]:
    """AUROC of MI, predictive entropy and deterministic softmax for other dropout rates
    (same data and settings, trained with the library behind `mcdrop train`)."""
    x, y = torch.from_numpy(data["fit"].x).float(), torch.from_numpy(data["fit"].y)
    seen, unseen = (torch.from_numpy(data[k].x).float() for k in ("test_in", "test_out"))
    config = TrainConfig(hidden=(128, 128), epochs=EPOCHS, min_feature_std=1.0, seed=SEED)
    table = {}
    for rate in SENSITIVITY_RATES:
        model = fit("classification", x, y, IN_CLASSES, Hyper(rate, 0.01, 1.0), config)
        stats = [
            classification_stats(torch.softmax(mc_passes(model, part, PASSES, SEED), -1), 0.9)
            for part in (seen, unseen)
        ]
        with torch.inference_mode():
            plain = [1 - torch.softmax(model(part), -1).max(-1).values for part in (seen, unseen)]
        table[rate] = {
            "mutual information": float(
                auroc(stats[0].mutual_information, stats[1].mutual_information)
            ),
            "predictive entropy": float(
                auroc(stats[0].predictive_entropy, stats[1].predictive_entropy)
            ),
            "1 - max softmax (deterministic)": float(auroc(plain[0], plain[1])),
        }
    return table


def _mixed_risk_coverage(
    pairs: dict[str, tuple[Tensor, Tensor]], right_in: Tensor, out_rows: int
) -> dict[str, RiskCoverage]:
    """Selective prediction on digits 0-9 together: an unseen digit is always an error."""
    correct = torch.cat([right_in, torch.zeros(out_rows, dtype=torch.bool)])
    curves = {}
    for label in MIXED_SCORES:
        seen, unseen = pairs[label]
        coverage, risk = risk_coverage_curve(torch.cat([seen, unseen]), correct)
        curves[label] = RiskCoverage(coverage.tolist(), risk.tolist())
    return curves


def measure(folder: Path, data: dict[str, Split], bundled: Path) -> Results:
    """Serve the model in process and score it on the test split."""
    app = create_app(load_settings(models_dir=folder.parent))
    with TestClient(app) as client:
        calibration = _calibration_reports(client, folder, data["test_in"])
        rows_in = _predict(client, data["test_in"].x)
        rows_out = _predict(client, data["test_out"].x)
    plain = (
        deterministic_probs(folder, data["test_in"].x)[0],
        deterministic_probs(folder, data["test_out"].x)[0],
    )
    pairs = _ood_scores(rows_in, rows_out, plain)
    aurocs = {label: float(auroc(a, b)) for label, (a, b) in pairs.items()}
    rocs = {}
    for label, (a, b) in pairs.items():
        fpr, tpr = roc_curve(a, b)
        rocs[label] = (fpr.tolist(), tpr.tolist(), aurocs[label])
    return Results(
        sizes={name: len(split.y) for name, split in data.items()},
        calibration=calibration,
        bundled_calibration=bundled_calibration(bundled),
        aurocs=aurocs,
        rocs=rocs,
        abstention=_abstention(folder, rows_in, rows_out, data["test_in"].y),
        histograms=_in_out_histograms(pairs),
        sensitivity=sensitivity(data),
        mixed=_mixed_risk_coverage(pairs, _right(rows_in, data["test_in"].y), len(rows_out)),
    )


def write_pictures(results: Results, out: Path) -> dict[str, str]:
    """PNG files under `out`; returns caption -> file name."""
    out.mkdir(parents=True, exist_ok=True)
    pictures = {
        "reliability_digits_mlp.png": figures.reliability_diagram(
            {name: report.reliability for name, report in results.bundled_calibration.items()},
            "Reliability of the bundled digits-mlp (10 classes)",
        ),
        "risk_coverage_all_digits.png": figures.risk_coverage_plot(
            results.mixed, "Digits-0to4 model on test digits 0-9 (unseen = error)"
        ),
        "roc.png": figures.roc_plot(results.rocs, "Digits 5-9 (OOD) against 0-4"),
        "mutual_information.png": figures.histogram_plot(
            results.histograms["mutual_information"],
            f"Mutual information, N = {PASSES}",
            "mutual information (nats)",
        ),
        "predictive_entropy.png": figures.histogram_plot(
            results.histograms["predictive_entropy"],
            f"Predictive entropy, N = {PASSES}",
            "predictive entropy (nats)",
        ),
    }
    for name, png in pictures.items():
        (out / name).write_bytes(png)
    return {name.removesuffix(".png").replace("_", " "): name for name in pictures}


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _intro(results: Results) -> list[str]:
    sizes = results.sizes
    return [
        "# Worked example: out-of-distribution digits",
        "",
        "Generated by `python scripts/ood_example.py` (deterministic; under half a minute on "
        "2 CPU cores). A dropout MLP (64 -> 128 -> 128 -> 5, dropout "
        f"{DROPOUT}, {EPOCHS} epochs) is trained with `mcdrop train` on the digits 0-4 only "
        f"({sizes['fit']} images of the demo models' training split); `mcdrop calibrate` sets "
        f"its abstention threshold on {sizes['calibration']} held-out images of 0-4; the model "
        f"is then served (the real app, in process) and scored on the test split: "
        f"{sizes['test_in']} images of 0-4 (seen classes) and {sizes['test_out']} images of "
        f"5-9 (never seen). It is written to `models-extra/{NAME}`; "
        "`mcdrop serve --models-dir models-extra` serves it.",
    ]


def _auroc_section(results: Results) -> list[str]:
    lines = [
        "## Telling unseen digits apart (AUROC, 5-9 against 0-4)",
        "",
        "1 = every unseen digit scores higher than every seen one; 0.5 = chance.",
        "",
        _row(["score (higher = more likely unseen)", "AUROC"]),
        _row(["---", "---:"]),
    ]
    lines += [_row([name, f"{value:.3f}"]) for name, value in results.aurocs.items()]
    lines += ["", "The same comparison for other dropout rates (everything else equal):", ""]
    names = list(next(iter(results.sensitivity.values())))
    lines += [_row(["dropout", *names]), _row(["---", *["---:"] * len(names)])]
    for rate, values in results.sensitivity.items():
        lines.append(_row([f"{rate:g}", *(f"{values[name]:.3f}" for name in names)]))
    return lines


def _calibration_section(title: str, reports: dict[str, ClassificationReport]) -> list[str]:
    lines = [
        title,
        "",
        _row(["passes", "accuracy", "NLL", "Brier", "ECE (15 bins)", "AURC"]),
        _row(["---", "---:", "---:", "---:", "---:", "---:"]),
    ]
    for name, r in reports.items():
        cells = [r.accuracy, r.nll, r.brier, r.ece, r.aurc]
        lines.append(_row([name, *(f"{value:.4f}" for value in cells)]))
    return lines


def _mixed_section(results: Results) -> list[str]:
    lines = [
        "## Selective prediction on every test digit",
        "",
        "The digits-0to4 model on all test digits 0-9, answering only its most certain rows; "
        "an unseen digit always counts as an error. AURC is the mean risk over coverages.",
        "",
        _row(["rows ranked by", "AURC", "risk at 50% coverage", "risk at 100%"]),
        _row(["---", "---:", "---:", "---:"]),
    ]
    for name, curve in results.mixed.items():
        half = curve.risk[math.ceil(len(curve.risk) / 2) - 1]
        area = sum(curve.risk) / len(curve.risk)
        lines.append(_row([name, f"{area:.4f}", f"{half:.4f}", f"{curve.risk[-1]:.4f}"]))
    return lines


def _abstention_section(results: Results) -> list[str]:
    share = results.abstention
    return [
        "## Abstention",
        "",
        f"`mcdrop calibrate` put the threshold on mutual information at "
        f"{share['threshold']:.4g} nats ({KEEP:.0%} of the held-out 0-4 images at or below "
        "it). Served with that card, the model answers `abstain: true` on:",
        "",
        _row(["rows", "abstain"]),
        _row(["---", "---:"]),
        _row(["test digits 0-4 (seen)", f"{share['in']:.1%}"]),
        _row(["test digits 5-9 (never seen)", f"{share['out']:.1%}"]),
        "",
        f"Accuracy on the seen digits it does answer: {share['kept_accuracy']:.4f}.",
    ]


def document(results: Results, pictures: dict[str, str]) -> str:
    """The Markdown page with the measured numbers."""
    lines = [*_intro(results), "", *_auroc_section(results), ""]
    lines += _calibration_section(
        "## Calibration on the seen classes (test digits 0-4)", results.calibration
    )
    lines += [
        "",
        *_calibration_section(
            "## Calibration of the bundled 10-class `digits-mlp` (its 450 test images)",
            results.bundled_calibration,
        ),
    ]
    lines += ["", *_mixed_section(results)]
    lines += ["", *_abstention_section(results), "", "## Pictures", ""]
    lines += [f"![{caption}](ood-example/{name})" for caption, name in pictures.items()]
    return "\n".join(lines) + "\n"


def run(models_dir: Path, docs_dir: Path, bundled: Path) -> None:
    """Train, calibrate, measure and write the page and pictures."""
    started = time.perf_counter()
    torch.set_num_threads(1)
    data = splits()
    with tempfile.TemporaryDirectory() as work:
        folder = train_and_calibrate(data, models_dir, Path(work))
    results = measure(folder, data, bundled)
    pictures = write_pictures(results, docs_dir / "ood-example")
    page = document(results, pictures)
    (docs_dir / "ood-example.md").write_text(page)
    print(page)
    print(f"done in {time.perf_counter() - started:.0f} s", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    """Parse the flags and run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--models-dir", type=Path, default=Path("models-extra"))
    parser.add_argument("--docs-dir", type=Path, default=Path("docs"))
    parser.add_argument("--bundled-models", type=Path, default=Path("models"))
    args = parser.parse_args(argv)
    run(args.models_dir, args.docs_dir, args.bundled_models)


if __name__ == "__main__":
    main()
