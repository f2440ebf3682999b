"""``mcdrop calibrate MODEL --conformal --in-data CAL.csv --level 0.9``.

Samples the model on labelled calibration rows (not used in training), takes the split-conformal
quantile of their scores (`app.engine.evaluation.conformal`) and writes the card's ``conformal``
section, keeping the rest of the card as it was. Served predictions then carry
``conformal_lower``/``conformal_upper`` (regression) or ``prediction_set`` (classification).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.engine.conformal import ConformalRule
    from app.engine.conformal_sets import SetParameters
    from app.engine.evaluation.conformal import ConformalReport


def run_conformal(args: argparse.Namespace) -> int:
    """Calibrate, report the rule and its coverage on the calibration rows, write the card."""
    from app.commands.calibrate import DEFAULT_SET_SCORE, SET_CHOICES
    from app.commands.tabular import TableError
    from app.errors import McdropError

    if not 0.0 < args.level < 1.0:
        print("mcdrop calibrate: --level must be in (0, 1)", file=sys.stderr)
        return 2
    args.score = args.score or DEFAULT_SET_SCORE
    if args.score not in SET_CHOICES:
        print(
            f"mcdrop calibrate: --conformal takes --score {', '.join(SET_CHOICES)}", file=sys.stderr
        )
        return 2
    try:
        rule, report, folder, n_samples = _fit(args)
    except (TableError, McdropError) as exc:
        print(f"mcdrop calibrate: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(
            json.dumps(
                {
                    "kind": rule.kind,
                    "level": rule.level,
                    "quantile": rule.quantile,
                    "class_quantiles": rule.class_quantiles,
                    "rows": report.rows,
                    "coverage": report.coverage,
                    "mean_set_size": report.mean_set_size,
                },
                indent=2,
            )
        )
    else:
        print(_describe(rule, report))
    if not args.dry_run:
        _write(folder, rule, report.rows, args.in_data.name, n_samples)
        print(f"wrote the conformal section to {folder / 'model.yaml'}", file=sys.stderr)
    return 0


def _fit(args: argparse.Namespace) -> tuple[ConformalRule, ConformalReport, Path, int]:
    import torch

    from app.commands._shared import model_folder
    from app.commands.tabular import TableError, labelled_rows
    from app.dataplane.policy import local_request
    from app.engine.conformal import apply_rule
    from app.engine.evaluation import parse_targets
    from app.engine.evaluation.conformal import conformal_report, fit_conformal, summary
    from app.registry.loading import load_model_folder

    folder = model_folder(args.models_dir, args.model)
    model = load_model_folder(folder)
    target = args.target or model.card.target
    if target is None:
        raise TableError("name the label column with --target (the model card has no 'target')")
    inputs, labels = labelled_rows(args.in_data, target, model.card.input.shape)
    assert labels is not None
    spec = model.predictor.spec
    cells = labels if spec.task == "classification" else [_number(cell) for cell in labels]
    targets = parse_targets(cells, spec, model.card.labels, model.output_shape)
    n_samples = args.n_samples or model.card.n_samples.default
    request = local_request(model, torch.from_numpy(inputs), n_samples=n_samples, seed=args.seed)
    passes = model.predictor.sample_passes(request)
    rule = fit_conformal(passes, targets, args.level, set_parameters(args), args.mondrian)
    mean, std = summary(passes)
    report = conformal_report(apply_rule(rule, mean, std, passes.seed), targets)
    return rule, report, folder, n_samples


def set_parameters(args: argparse.Namespace) -> SetParameters:
    """The classification set score and its options from the command line."""
    from app.engine.conformal_sets import SetParameters

    penalty = args.penalty if args.score == "raps" else 0.0
    k_reg = args.k_reg if args.score == "raps" else 0
    return SetParameters(args.score, penalty, k_reg, args.randomized and args.score != "lac")


def _number(cell: str) -> float:
    from app.commands.tabular import TableError

    try:
        return float(cell)
    except ValueError:
        raise TableError(f"regression targets must be numbers, got {cell!r}") from None


def _describe(rule: ConformalRule, report: ConformalReport) -> str:
    what = (
        "normalised-residual quantile"
        if rule.kind == "normalised_residual"
        else f"{rule.kind.upper()} threshold"
    )
    size = (
        f"mean width {report.mean_width:.4g}"
        if report.mean_width is not None
        else f"mean set size {report.mean_set_size:.3f}"
    )
    return (
        f"conformal {what} at level {rule.level:g}: {rule.quantile:.6g} "
        f"({report.rows} calibration rows; coverage on them {report.coverage:.3f}, {size})"
    )


def _write(folder: Path, rule: ConformalRule, rows: int, data: str, n_samples: int) -> None:
    import yaml

    from app.registry.card import CARD_FILE, write_card

    document = yaml.safe_load((folder / CARD_FILE).read_text())
    section: dict[str, object] = {"kind": rule.kind, "level": rule.level, "quantile": rule.quantile}
    if rule.kind == "raps":
        section.update(penalty=rule.penalty, k_reg=rule.k_reg)
    if rule.randomized:
        section["randomized"] = True
    if rule.class_quantiles is not None:
        section["class_quantiles"] = list(rule.class_quantiles)
    section.update(rows=rows, calibrated_on=data, n_samples=n_samples)
    document["conformal"] = section
    write_card(folder, document)
