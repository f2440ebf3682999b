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


def test_segmentation_refers_the_uncertain_wrong_image_first() -> None:
    from app.engine.evaluation.segmentation import segmentation_report

    # two passes, two images of 1 x 2 pixels, classes (background, lesion). Image 0: both
    # passes say lesion everywhere (MI 0), and it is; image 1: the passes disagree (MI ln 2,
    # mean (0.5, 0.5), argmax background), but it is all lesion: Dice 0.
    lesion = torch.tensor([0.0, 1.0], dtype=torch.float64).view(2, 1, 1)
    background = 1.0 - lesion
    image0 = torch.stack([lesion.expand(2, 1, 2)] * 2)  # (N, C, H, W)
    image1 = torch.stack([lesion.expand(2, 1, 2), background.expand(2, 1, 2)])
    probs = torch.stack([image0, image1], dim=1)  # (N, B, C, H, W)
    report = segmentation_report(probs, torch.ones(2, 1, 2, dtype=torch.long))
    (dice,) = report.referral
    assert dice.metric == "dice"
    for curve in dice.curves.values():
        assert curve[0] == 0.5  # both images
        assert curve[dice.rates.index(0.5)] == 1.0  # image 1 referred
