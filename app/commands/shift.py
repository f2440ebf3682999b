"""``mcdrop calibrate MODEL --ood --in-data TRAIN.csv --held-out HELD.csv [--ood-data OOD.csv]``.

Fits the distribution-shift detector of :mod:`app.engine.shift` on the labelled training rows
(class Gaussians on the activation entering the first dropout, or on the input where the model
has no prefix; each input value's range), sets its threshold for ``--false-alarm`` of the
held-out in-distribution rows, and writes the card's ``shift`` section and its tensor file.
With ``--ood-data`` it also reports how well the shift score, mutual information, predictive
entropy and 1 - confidence tell the held-out rows from the OOD rows (AUROC).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import Tensor

    from app.engine.shift import ShiftRule
    from app.registry.served import ServedModel

SHIFT_FILE = "shift.safetensors"


def run_shift(args: argparse.Namespace) -> int:
    """Fit, report, and write the card's shift section."""
    from app.commands._output import EXIT_PROBLEM, EXIT_USAGE
    from app.commands.tabular import TableError
    from app.errors import InvalidInputError, McdropError

    if args.held_out is None:
        print(
            "mcdrop calibrate: --ood needs --held-out (in-distribution rows not trained on)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if not 0.0 <= args.false_alarm < 1.0:
        print("mcdrop calibrate: --false-alarm must be in [0, 1)", file=sys.stderr)
        return EXIT_USAGE
    try:
        model = _load(args)
        rule, result = _fit(model, args)
    except (TableError, InvalidInputError) as exc:
        print(f"mcdrop calibrate: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except McdropError as exc:
        print(f"mcdrop calibrate: {exc}", file=sys.stderr)
        return EXIT_PROBLEM
    print(json.dumps(result, indent=2) if args.json else _describe(result))
    if not args.dry_run:
        _write(model.folder, rule, result, args)
        print(f"wrote the shift section to {model.folder / 'model.yaml'}", file=sys.stderr)
    return 0


def _load(args: argparse.Namespace) -> ServedModel:
    from app.commands._shared import model_folder
    from app.errors import InvalidInputError
    from app.registry.loading import load_model_folder
    from app.registry.served import LoadOptions

    # The old shift section, broken or not, is being replaced: not loaded.
    model = load_model_folder(model_folder(args.models_dir, args.model), LoadOptions(shift=False))
    if model.card.task != "classification":
        raise InvalidInputError("model", "the shift detector applies to classification models")
    return model


def feature_source(model: ServedModel, inputs: Tensor) -> tuple[str, str]:
    """(source, note): the prefix when the model has one, else its (float) input; raises
    InvalidInputError when neither can be modelled."""
    from app.errors import InvalidInputError

    if model.predictor.sampler.features(inputs[:2]) is not None:
        return "prefix", f"activation entering the first dropout ({model.split.reason})"
    if not inputs.is_floating_point():
        raise InvalidInputError(
            "model",
            f"no deterministic prefix ({model.split.reason}) and the input is not a float "
            "tensor: there are no features to model",
        )
    return (
        "input",
        f"model input: no deterministic prefix to take features from ({model.split.reason})",
    )


def _fit(model: ServedModel, args: argparse.Namespace) -> tuple[ShiftRule, dict[str, Any]]:
    from app.engine.evaluation import parse_targets
    from app.engine.shift import apply_shift, fit_shift_rule, shift_features

    train_x, cells = _rows(model, args.in_data, args.target)
    held_x, _ = _rows(model, args.held_out, args.target, labelled=False)
    spec = model.predictor.spec
    labels = parse_targets(cells, spec, model.card.labels, model.output_shape).long()
    source, note = feature_source(model, train_x)
    sampler = model.predictor.sampler
    train_features = shift_features(sampler, source, train_x)  # type: ignore[arg-type]
    held_features = shift_features(sampler, source, held_x)  # type: ignore[arg-type]
    assert train_features is not None and held_features is not None
    rule, flagged = fit_shift_rule(
        source,  # type: ignore[arg-type]
        (train_features, labels, train_x),
        (held_features, held_x),
        args.false_alarm,
        args.margin,
    )
    result: dict[str, Any] = {
        "source": source,
        "source_note": note,
        "features": int(train_features.shape[1]),
        "rows": int(train_x.shape[0]),
        "held_out_rows": int(held_x.shape[0]),
        "threshold": rule.threshold,
        "range_check": rule.low is not None,
        "false_alarm_rate": args.false_alarm,
        "held_out_false_alarms": flagged,
    }
    if args.ood_data is not None:
        ood_x, _ = _rows(model, args.ood_data, args.target, labelled=False)
        ood = apply_shift(rule, shift_features(sampler, source, ood_x), ood_x)  # type: ignore[arg-type]
        held = apply_shift(rule, held_features, held_x)
        result["ood_rows"] = int(ood_x.shape[0])
        result["ood_flagged"] = float(ood.flag.double().mean())
        result["auroc"] = _aurocs(model, args, (held_x, held.score), (ood_x, ood.score))
    return rule, result


def _rows(
    model: ServedModel, path: Path, target: str | None, labelled: bool = True
) -> tuple[Tensor, list[str]]:
    """(inputs (B, ...), label cells) of a CSV file: numeric feature columns for tensor
    models, one text column for text models."""
    import torch

    from app.commands.tabular import TableError, feature_rows, labelled_rows

    label = target or model.card.target
    if labelled and label is None:
        raise TableError("name the label column with --target (the model card has no 'target')")
    if model.card.input.type == "text":
        return _text_rows(model, path, label, labelled)
    if not labelled:
        return torch.from_numpy(feature_rows(path, model.card.input.shape, label)), []
    inputs, cells = labelled_rows(path, label, model.card.input.shape)
    assert cells is not None
    return torch.from_numpy(inputs), list(cells)


def _text_rows(
    model: ServedModel, path: Path, label: str | None, labelled: bool
) -> tuple[Tensor, list[str]]:
    """A text model's rows: the one column that is not the label holds the texts."""
    from app.commands.tabular import TableError, read_csv

    table = read_csv(path)
    if labelled and label not in table.columns:
        raise TableError(f"{path}: no column '{label}' (columns: {', '.join(table.columns)})")
    texts = [c for c in table.columns if c != label]
    if len(texts) != 1:
        raise TableError(f"{path}: a text model takes one text column beside the label")
    column = table.columns.index(texts[0])
    cells = []
    if labelled and label is not None:
        cells = [row[table.columns.index(label)] for row in table.rows]
    inputs = model.rows_to_tensor([row[column] for row in table.rows], len(table.rows))
    return inputs, cells


def _aurocs(
    model: ServedModel,
    args: argparse.Namespace,
    held: tuple[Tensor, Tensor],
    ood: tuple[Tensor, Tensor],
) -> dict[str, float]:
    """AUROC (held-out vs OOD) of the shift score beside the MC dropout scores."""
    from app.dataplane.policy import local_request
    from app.engine.abstention import RankingScore, uncertainty_score
    from app.engine.evaluation.ood import auroc

    n_samples = args.n_samples or model.card.n_samples.default
    stats = [
        model.predictor.predict(local_request(model, x, n_samples=n_samples, seed=args.seed)).stats
        for x in (held[0], ood[0])
    ]
    areas = {"shift_score": float(auroc(held[1], ood[1]))}
    names: tuple[RankingScore, ...] = ("mutual_information", "predictive_entropy", "confidence")
    for name in names:
        key = "1 - confidence" if name == "confidence" else name
        areas[key] = float(
            auroc(uncertainty_score(stats[0], name), uncertainty_score(stats[1], name))
        )
    return areas


def _describe(result: dict[str, Any]) -> str:
    from app.commands.tables import table

    lines = [
        f"shift detector on {result['source']} features ({result['features']} values; "
        f"{result['source_note']}), fitted on {result['rows']} training rows",
        f"Mahalanobis threshold {result['threshold']:.6g}"
        + (" plus the input range check" if result["range_check"] else "")
        + f": flags {result['held_out_false_alarms']:.1%} of {result['held_out_rows']} held-out "
        f"rows (target {result['false_alarm_rate']:.1%})",
    ]
    if "auroc" in result:
        lines.append(f"it flags {result['ood_flagged']:.1%} of {result['ood_rows']} OOD rows")
        lines.append("AUROC held-out vs OOD (1 = perfect, 0.5 = chance):")
        rows = [[name, f"{value:.4f}"] for name, value in result["auroc"].items()]
        lines += ["  " + line for line in table(None, rows).splitlines()]
    return "\n".join(lines)


def _write(folder: Path, rule: ShiftRule, result: dict[str, Any], args: argparse.Namespace) -> None:
    import yaml

    from app.registry.card import CARD_FILE, write_card
    from app.registry.shift_file import save_shift_tensors

    sha256 = save_shift_tensors(folder / SHIFT_FILE, rule)
    document = yaml.safe_load((folder / CARD_FILE).read_text())
    document["shift"] = {
        "file": SHIFT_FILE,
        "sha256": sha256,
        "source": result["source"],
        "source_note": result["source_note"],
        "threshold": rule.threshold,
        "margin": args.margin,
        "false_alarm_rate": args.false_alarm,
        "held_out_false_alarms": round(result["held_out_false_alarms"], 6),
        "rows": result["rows"],
        "held_out_rows": result["held_out_rows"],
        "calibrated_on": args.in_data.name,
    }
    write_card(folder, document)
