"""Worked example: is this input like my training data? MI against a distance-aware shift score.

Reproducible with the commands a user would run (about half a minute on 2 cores):
1. breast cancer (scikit-learn's `load_breast_cancer`): `mcdrop train` on 60% of the rows,
   `mcdrop calibrate` (abstention on mutual information) and `mcdrop calibrate --ood` (the shift
   detector) on 20% held out, then the other 20% is scored as it is and with every measurement
   scaled by 1.8 (a unit or device change): accuracy, NLL, the AUROC of each score and the share
   of rows each flag catches, and the false alarms on the unscaled test rows;
2. digits 0-4 against 5-9: the shift detector fitted on the bundled example's training split
   (`models-extra/digits-0to4-mlp`, see docs/ood-example.md) against its mutual information.

Usage: `python scripts/shift_example.py [--out docs/shift-example.md] [--write-card]`
(``--write-card`` also writes the shift section into `models-extra/digits-0to4-mlp`).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from app.cli import main as mcdrop
from app.commands.tabular import write_csv
from app.dataplane.policy import local_request
from app.engine.abstention import uncertainty_score
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write-card", action="store_true", help="calibrate models-extra in place")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        cancer = breast_cancer(work)
        folder = DIGITS_FOLDER
        if not args.write_card:
            folder = work / DIGITS_FOLDER.name
            shutil.copytree(DIGITS_FOLDER, folder)
        digit = digits(folder, work)
    cancer.pop("folder")
    print({"breast_cancer": cancer, "digits": digit})


if __name__ == "__main__":
    main()
