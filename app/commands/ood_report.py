"""``mcdrop evaluate --ood-data``: how well each score tells in-distribution rows from OOD rows.

AUROC (:func:`app.engine.evaluation.ood.auroc`) of the shift score (where the card has a
``shift`` section), mutual information, predictive entropy and 1 - confidence, side by side,
with the share of rows each flag (shift, abstain) catches.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from app.engine.predictor import Prediction
    from app.registry.served import ServedModel

MC_SCORES = ("mutual_information", "predictive_entropy", "confidence")


def ood_scores(model: ServedModel, inside: Prediction, outside: Prediction) -> dict[str, Any]:
    """AUROCs by score name (``shift_score`` first where available) and flagged shares."""
    from app.engine.abstention import uncertainty_score
    from app.engine.evaluation.ood import auroc

    areas: dict[str, float] = {}
    flagged: dict[str, dict[str, float]] = {}
    if inside.shift is not None and outside.shift is not None:
        areas["shift_score"] = float(auroc(inside.shift.score, outside.shift.score))
        flagged["shift_flag"] = _shares(inside.shift.flag, outside.shift.flag)
    for name in MC_SCORES:
        label = "1 - confidence" if name == "confidence" else name
        scores = [uncertainty_score(p.stats, name) for p in (inside, outside)]  # type: ignore[arg-type]
        areas[label] = float(auroc(scores[0], scores[1]))
    if inside.abstain is not None and outside.abstain is not None:
        flagged["abstain"] = _shares(inside.abstain, outside.abstain)
    return {"auroc": areas, "flagged": flagged}


def _shares(inside: Any, outside: Any) -> dict[str, float]:
    return {"in": float(inside.double().mean()), "ood": float(outside.double().mean())}


def ood_report(args: argparse.Namespace) -> dict[str, Any]:
    """Load the model, predict both files with the same N and seed: :func:`ood_scores` plus
    whether the card has a shift section."""
    import torch

    from app.commands._shared import model_folder
    from app.commands.tabular import feature_rows
    from app.dataplane.policy import local_request
    from app.registry.loading import load_model_folder

    model = load_model_folder(model_folder(args.models_dir, args.model))
    label = args.target or model.card.target
    predictions = []
    for path in (args.data, args.ood_data):
        x = torch.from_numpy(feature_rows(path, model.card.input.shape, label))
        request = local_request(model, x, n_samples=args.n_samples, seed=args.seed)
        predictions.append(model.predictor.predict(request))
    return {
        **ood_scores(model, predictions[0], predictions[1]),
        "shift": model.card.shift is not None,
    }


def describe_ood(result: dict[str, Any], args: argparse.Namespace) -> str:
    """The comparison as text: the AUROC table and the flagged shares."""
    from app.commands.tables import table

    lines = []
    if not result["shift"]:
        lines.append("no shift section in the card (mcdrop calibrate --ood): MC scores only")
    lines.append(f"AUROC {args.data.name} vs {args.ood_data.name} (1 = perfect, 0.5 = chance):")
    rows = [[name, f"{value:.4f}"] for name, value in result["auroc"].items()]
    lines += ["  " + line for line in table(None, rows).splitlines()]
    for flag, shares in result["flagged"].items():
        lines.append(
            f"{flag}: {shares['in']:.1%} of in-distribution rows, {shares['ood']:.1%} of OOD rows"
        )
    return "\n".join(lines)
