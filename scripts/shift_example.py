"""Worked example: is this input like my training data? MI against a distance-aware shift score.

Reproducible with the commands a user would run (about half a minute on 2 cores):
1. breast cancer (scikit-learn's `load_breast_cancer`): `mcdrop train` on 60% of the rows,
   `mcdrop calibrate` (abstention on mutual information) and `mcdrop calibrate --ood` (the shift
   detector) on 20% held out, then the other 20% is scored as it is and with every measurement
   scaled by 1.8 (a unit or device change): accuracy, NLL, the AUROC of each score and the share
   of rows each flag catches, and the false alarms on the unscaled test rows;
2. digits 0-4 against 5-9: the shift detector fitted on the bundled example's training split
   (`models-extra/digits-0to4-mlp`, see docs/ood-example.md) against its mutual information.

Usage: `python scripts/shift_example.py [--out docs/shift-example.md] [--write-card]
[--data-dir DIR]` (``--write-card`` also writes the shift section into
`models-extra/digits-0to4-mlp`; ``--data-dir`` writes the breast-cancer CSVs train.csv,
held_out.csv, test.csv and shifted.csv that the README's commands use).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from app.cli import main as mcdrop
from app.commands.tabular import write_csv
from app.dataplane.policy import local_request
from app.engine.abstention import uncertainty_score
from app.engine.conformal import conformal_quantile
from app.engine.conformal_sets import SetParameters, calibration_scores, prediction_sets
from app.engine.evaluation import auroc, evaluate
from app.engine.predictor import Prediction
from app.registry.loading import load_model_folder
from app.registry.served import ServedModel

SEED = 0
PASSES = 100
SCALE = 1.8
FALSE_ALARM = 0.05
KEEP = 0.95
SCORES = {
    "shift_score": "shift score (Mahalanobis, prefix features)",
    "mutual_information": f"mutual information (N = {PASSES})",
    "predictive_entropy": f"predictive entropy (N = {PASSES})",
    "confidence": f"1 - confidence (N = {PASSES})",
}
REPO = Path(__file__).resolve().parent.parent
DIGITS_FOLDER = REPO / "models-extra" / "digits-0to4-mlp"


@dataclass(frozen=True)
class Table:
    """Rows of one labelled split: features (B, D) and class names (B,)."""

    x: np.ndarray
    y: list[str]


def breast_cancer_splits(seed: int = SEED) -> tuple[list[str], dict[str, Table]]:
    """(feature names, {train 60%, held_out 20%, test 20%, shifted: test x SCALE})."""
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    names = [name.replace(" ", "_") for name in data.feature_names]
    order = np.random.default_rng(seed).permutation(len(data.target))
    cut = [int(len(order) * 0.6), int(len(order) * 0.8)]
    parts = np.split(order, cut)
    labels = [str(data.target_names[t]) for t in data.target]
    tables = {
        role: Table(data.data[rows].astype(np.float32), [labels[i] for i in rows])
        for role, rows in zip(("train", "held_out", "test"), parts, strict=True)
    }
    tables["shifted"] = Table(tables["test"].x * SCALE, tables["test"].y)
    return names, tables


def write_table(path: Path, names: list[str], table: Table) -> Path:
    """The table as a CSV file with a `diagnosis` column."""
    write_csv(
        path,
        [*names, "diagnosis"],
        [[*map(float, r), y] for r, y in zip(table.x, table.y, strict=True)],
    )
    return path


def train_and_calibrate(work: Path, epochs: int = 200, hidden: int = 64) -> Path:
    """`mcdrop train`, `mcdrop calibrate` (MI abstention) and `mcdrop calibrate --ood`."""
    names, tables = breast_cancer_splits()
    csvs = {role: write_table(work / f"{role}.csv", names, t) for role, t in tables.items()}
    folder = work / "breast-cancer"
    train = ["train", "--data", str(csvs["train"]), "--target", "diagnosis"]
    train += ["--task", "classification", "--out", str(folder), "--force", "--quiet"]
    train += ["--epochs", str(epochs), "--hidden", str(hidden), str(hidden), "--seed", str(SEED)]
    steps = [
        train,
        ["calibrate", str(folder), "--in-data", str(csvs["held_out"]), "--keep", str(KEEP)],
        [
            "calibrate",
            str(folder),
            "--ood",
            "--in-data",
            str(csvs["train"]),
            "--held-out",
            str(csvs["held_out"]),
            "--false-alarm",
            str(FALSE_ALARM),
        ],
    ]
    for step in steps:
        if mcdrop([*step, "--seed", str(SEED)] if step[0] == "calibrate" else step) != 0:
            raise SystemExit(f"mcdrop {' '.join(step[:2])} failed")
    return folder


def predict(model: ServedModel, x: np.ndarray) -> Prediction:
    request = local_request(model, torch.from_numpy(x), n_samples=PASSES, seed=SEED)
    return model.predictor.predict(request)


def score_of(prediction: Prediction, name: str) -> Tensor:
    if name == "shift_score":
        assert prediction.shift is not None
        return prediction.shift.score
    return uncertainty_score(prediction.stats, name)  # type: ignore[arg-type]


def aurocs(inside: Prediction, outside: Prediction) -> dict[str, float]:
    return {name: float(auroc(score_of(inside, name), score_of(outside, name))) for name in SCORES}


def breast_cancer(work: Path, epochs: int = 200, hidden: int = 64) -> dict[str, object]:
    """Every number of the breast-cancer part."""
    folder = train_and_calibrate(work, epochs, hidden)
    model = load_model_folder(folder)
    _, tables = breast_cancer_splits()
    predictions = {role: predict(model, tables[role].x) for role in ("test", "shifted")}
    quality = {}
    for role in ("test", "shifted"):
        targets = torch.tensor([model.card.labels.index(y) for y in tables[role].y])  # type: ignore[union-attr]
        request = local_request(
            model, torch.from_numpy(tables[role].x), n_samples=PASSES, seed=SEED
        )
        report = evaluate(model.predictor, request, targets).classification
        assert report is not None
        quality[role] = {"accuracy": report.accuracy, "nll": report.nll, "ece": report.ece}
    flags = {}
    assert model.card.abstention is not None
    for role, prediction in predictions.items():
        mi = prediction.stats.mutual_information > model.card.abstention.threshold
        assert prediction.shift is not None
        flags[role] = {
            "mi": float(mi.double().mean()),
            "shift": float(prediction.shift.flag.double().mean()),
        }
    return {
        "folder": folder,
        "quality": quality,
        "auroc": aurocs(predictions["test"], predictions["shifted"]),
        "flags": flags,
        "held_out_false_alarms": model.card.shift.held_out_false_alarms
        if model.card.shift
        else None,
    }


def digits(folder: Path, work: Path) -> dict[str, object]:
    """The shift detector on the digits 0-4 example: AUROC 5-9 vs 0-4 beside MI."""
    sys.path.insert(0, str(REPO / "scripts"))
    from ood_example import PIXELS, splits

    data = splits()
    csvs = {}
    for role in ("fit", "calibration"):
        rows = [[*map(float, r), int(d)] for r, d in zip(data[role].x, data[role].y, strict=True)]
        csvs[role] = work / f"digits-{role}.csv"
        write_csv(csvs[role], [*PIXELS, "digit"], rows)
    command = ["calibrate", str(folder), "--ood", "--in-data", str(csvs["fit"])]
    command += ["--held-out", str(csvs["calibration"]), "--false-alarm", str(FALSE_ALARM)]
    if mcdrop(command) != 0:
        raise SystemExit("mcdrop calibrate --ood failed")
    model = load_model_folder(folder)
    inside, outside = predict(model, data["test_in"].x), predict(model, data["test_out"].x)
    assert inside.shift is not None and outside.shift is not None and inside.abstain is not None
    assert outside.abstain is not None
    return {
        "auroc": aurocs(inside, outside),
        "flags": {
            "in": {
                "shift": float(inside.shift.flag.double().mean()),
                "abstain": float(inside.abstain.double().mean()),
            },
            "out": {
                "shift": float(outside.shift.flag.double().mean()),
                "abstain": float(outside.abstain.double().mean()),
            },
        },
    }


SET_VARIANTS = {
    "LAC": SetParameters("lac"),
    "APS": SetParameters("aps"),
    "APS, randomised": SetParameters("aps", randomized=True),
    "RAPS (λ 0.01, k_reg 1)": SetParameters("raps", penalty=0.01, k_reg=1),
    "RAPS, randomised": SetParameters("raps", penalty=0.01, k_reg=1, randomized=True),
}
LEVEL = 0.9
SPLITS = 20


def set_sizes(probs: Tensor, labels: Tensor, seed: int = SEED) -> dict[str, tuple[float, float]]:
    """Score -> (coverage, mean set size) at LEVEL, averaged over SPLITS random halves of the
    rows (one half calibrates, the other is scored): probs (B, C), labels (B,)."""
    generator = torch.Generator().manual_seed(seed)
    out = {}
    for name, parameters in SET_VARIANTS.items():
        coverage = size = 0.0
        for _ in range(SPLITS):
            order = torch.randperm(len(labels), generator=generator)
            cal, test = order[: len(order) // 2], order[len(order) // 2 :]
            scores = calibration_scores(probs[cal], labels[cal], parameters, generator)
            q = torch.tensor(conformal_quantile(scores, LEVEL))
            sets = prediction_sets(probs[test], q, parameters, generator)
            coverage += float(sets.gather(1, labels[test].unsqueeze(1)).double().mean())
            size += float(sets.double().sum(1).mean())
        out[name] = (coverage / SPLITS, size / SPLITS)
    return out


def bundled_probs() -> dict[str, tuple[Tensor, Tensor]]:
    """Mean probabilities (B, C) and labels (B,) of the bundled digits classifiers on the
    demo test split (450 images)."""
    sys.path.insert(0, str(REPO / "scripts"))
    from train_demo_models import digits_split

    _, x_test, _, y_test = digits_split()
    out = {}
    for name in ("digits-mlp", "digits-cnn"):
        model = load_model_folder(REPO / "models" / name)
        x = torch.from_numpy(x_test).reshape(-1, *model.card.input.shape)
        prediction = model.predictor.predict(local_request(model, x, n_samples=PASSES, seed=SEED))
        out[name] = (prediction.stats.mean.double(), torch.from_numpy(y_test))
    return out


def cancer_probs(folder: Path) -> tuple[Tensor, Tensor]:
    """Mean probabilities and labels of the breast-cancer model on held-out + test rows."""
    model = load_model_folder(folder)
    _, tables = breast_cancer_splits()
    x = np.concatenate([tables["held_out"].x, tables["test"].x])
    names = tables["held_out"].y + tables["test"].y
    prediction = predict(model, x)
    assert model.card.labels is not None
    return prediction.stats.mean.double(), torch.tensor([model.card.labels.index(n) for n in names])


def digits_probs(folder: Path) -> tuple[Tensor, Tensor]:
    """Mean probabilities and labels of the digits 0-4 model on its test digits 0-4."""
    from ood_example import splits

    data = splits()["test_in"]
    prediction = predict(load_model_folder(folder), data.x)
    return prediction.stats.mean.double(), torch.from_numpy(data.y)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write-card", action="store_true", help="calibrate models-extra in place")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "shift-example.md")
    parser.add_argument(
        "--data-dir", type=Path, help="also write the breast-cancer CSVs here (the README's)"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.data_dir is not None:
        args.data_dir.mkdir(parents=True, exist_ok=True)
        names, tables = breast_cancer_splits()
        for role, table in tables.items():
            write_table(args.data_dir / f"{role}.csv", names, table)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        cancer = breast_cancer(work)
        probs = {"breast-cancer": cancer_probs(cancer["folder"]), **bundled_probs()}  # type: ignore[arg-type]
        sizes = {name: set_sizes(*pair) for name, pair in probs.items()}
        folder = DIGITS_FOLDER
        if not args.write_card:
            folder = work / DIGITS_FOLDER.name
            shutil.copytree(DIGITS_FOLDER, folder)
        digit = digits(folder, work)
        sizes["digits-0to4-mlp"] = set_sizes(*digits_probs(folder))
    cancer.pop("folder")
    args.out.write_text(document(cancer, digit, sizes))
    print(f"wrote {args.out}")


def _pct(value: object) -> str:
    return f"{float(value):.1%}"  # type: ignore[arg-type]


def _flag_row(label: str, shares: dict[str, Any], key: str) -> str:
    """| label | share in the first role | share in the second |."""
    first, second = shares.values()
    return f"| {label} | {_pct(first[key])} | {_pct(second[key])} |"


def document(cancer: dict[str, Any], digit: dict[str, Any], sizes: dict[str, Any]) -> str:
    """The markdown page: the breast-cancer case, digits, the conformal score table."""
    q = cancer["quality"]
    lines = [
        "# Worked example: is this input like my training data?",
        "",
        "Generated by `python scripts/shift_example.py` (deterministic; about half a minute on "
        "2 CPU cores). The commands it runs are the ones a user would type (`mcdrop train`, "
        "`mcdrop calibrate`, `mcdrop calibrate --ood`).",
        "",
        "## Breast cancer, every measurement scaled by 1.8",
        "",
        f"scikit-learn's `load_breast_cancer`, 60% to train, 20% held out (abstention and shift "
        f"thresholds), 20% test, and the test rows with every feature times {SCALE} (a unit or "
        f"device change). MC passes N = {PASSES}.",
        "",
        "| rows | accuracy | NLL | ECE |",
        "| --- | ---: | ---: | ---: |",
    ]
    for role in ("test", "shifted"):
        lines.append(
            f"| {role} | {q[role]['accuracy']:.3f} | {q[role]['nll']:.2f} | {q[role]['ece']:.3f} |"
        )
    lines += [
        "",
        "AUROC, shifted against unscaled test rows:",
        "",
        "| score | AUROC |",
        "| --- | ---: |",
    ]
    lines += [f"| {SCORES[k]} | {v:.3f} |" for k, v in cancer["auroc"].items()]
    f = cancer["flags"]
    lines += [
        "",
        "| flag | test rows (false alarms) | shifted rows |",
        "| --- | ---: | ---: |",
        _flag_row("mutual information > its threshold (95% of held-out kept)", f, "mi"),
        _flag_row(
            "`shift_flag` (5% false alarms on held-out; measured there "
            f"{_pct(cancer['held_out_false_alarms'])})",
            f,
            "shift",
        ),
        "",
        "## Digits 0-4 against 5-9 (`models-extra/digits-0to4-mlp`)",
        "",
        "The shift detector fitted on the example's 540 training digits 0-4, its threshold on the "
        "135 held-out ones ([ood-example.md](ood-example.md) has the rest); scored on the test "
        "digits.",
        "",
        "| score | AUROC, 5-9 vs 0-4 |",
        "| --- | ---: |",
    ]
    lines += [f"| {SCORES[k]} | {v:.3f} |" for k, v in digit["auroc"].items()]
    g = digit["flags"]
    lines += [
        "",
        "| flag | test 0-4 (false alarms) | test 5-9 |",
        "| --- | ---: | ---: |",
        _flag_row("`shift_flag`", g, "shift"),
        _flag_row("`abstain` (MI threshold or `shift_flag`, recommended)", g, "abstain"),
        "",
        "## Which conformal score",
        "",
        f"Coverage and mean set size at level {LEVEL}, mean of {SPLITS} random halves (one "
        "calibrates, the other is scored) of each model's held-out rows (digits: the 450 demo "
        "test images; breast cancer: held-out and test rows; digits-0to4: its test 0-4). "
        "LAC has the smallest sets at the nominal coverage on every model, so it is the "
        "default of `mcdrop calibrate --conformal` (a LAC set may be empty: no class is "
        "plausible, a reason to abstain).",
        "",
        "| model | " + " | ".join(SET_VARIANTS) + " |",
        "| --- |" + " ---: |" * len(SET_VARIANTS),
    ]
    for model, row in sizes.items():
        cells = [f"{cov:.3f} / {size:.2f}" for cov, size in row.values()]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    lines += ["", "Each cell: coverage / mean set size.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
