"""The classification report's referral curves: accuracy for every model, AUROC for two
classes, each ordering's curve the pure function's on that ordering's scores."""

from __future__ import annotations

import torch

from app.engine.abstention import uncertainty_score
from app.engine.evaluation import classification_report
from app.engine.evaluation.referral import REFERRAL_RATES, retained_mean_curve
from app.engine.stats import classification_stats


def _passes(classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(4)
    logits = torch.randn((30, 40, classes), generator=generator, dtype=torch.float64) * 2
    targets = torch.randint(0, classes, (40,), generator=generator)
    return logits.softmax(-1), targets


def test_binary_models_get_accuracy_and_auroc_curves() -> None:
    probs, targets = _passes(2)
    report = classification_report(probs, targets)
    assert [r.metric for r in report.referral] == ["accuracy", "auroc"]
    accuracy = report.referral[0]
    assert accuracy.rates == list(REFERRAL_RATES)
    assert set(accuracy.curves) == {"mutual_information", "predictive_entropy", "confidence"}
    stats = classification_stats(probs, 0.5)
    correct = (stats.mean.argmax(-1) == targets).double()
    for name, curve in accuracy.curves.items():
        assert curve == retained_mean_curve(uncertainty_score(stats, name), correct)  # type: ignore[arg-type]
    assert accuracy.curves["mutual_information"][0] == report.accuracy


def test_many_classes_get_the_accuracy_curve_only() -> None:
    probs, targets = _passes(5)
    assert [r.metric for r in classification_report(probs, targets).referral] == ["accuracy"]
