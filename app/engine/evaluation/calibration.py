"""Calibrating an abstention threshold on in-distribution rows, and checking it on OOD rows."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from torch import Tensor

from app.engine.abstention import RANKING_SCORES, AbstentionScore, uncertainty_score
from app.engine.evaluation.ood import auroc, kept_share, threshold_for_share
from app.engine.evaluation.referral import referral_for_target
from app.engine.stats import ClassificationStats


@dataclass(frozen=True)
class Calibration:
    """The threshold picked on `score` and how it separates in- from out-of-distribution."""

    score: AbstentionScore
    threshold: float
    keep: float
    """Target share of in-distribution rows at or below the threshold."""
    in_rows: int
    in_kept: float
    """Share of the in-distribution rows actually kept (>= keep; more with ties)."""
    out_rows: int | None = None
    out_flagged: float | None = None
    """Share of the OOD rows above the threshold (they would abstain)."""
    auroc: dict[str, float] | None = None
    """AUROC of each score (higher = more likely OOD) for telling the two sets apart."""
    retained_accuracy: float | None = None
    """With labels (``--retained-accuracy``): the accuracy of the rows kept."""
    target_accuracy: float | None = None


def calibrate(
    in_stats: ClassificationStats,
    score: AbstentionScore,
    keep: float,
    out_stats: ClassificationStats | None = None,
) -> Calibration:
    """Pick the threshold on `score` keeping `keep` of the in-distribution rows
    (`threshold_for_share`); with OOD rows, also the flagged share and every score's AUROC."""
    in_scores: dict[str, Tensor] = {n: uncertainty_score(in_stats, n) for n in RANKING_SCORES}
    out_scores: dict[str, Tensor] | None = None
    if out_stats is not None:
        out_scores = {name: uncertainty_score(out_stats, name) for name in RANKING_SCORES}
    return calibrate_scores(score, keep, in_scores, out_scores)


def calibrate_scores(
    score: AbstentionScore,
    keep: float,
    in_scores: Mapping[str, Tensor],
    out_scores: Mapping[str, Tensor] | None = None,
) -> Calibration:
    """The threshold on ``in_scores[score]`` ((B,), higher = less certain) keeping `keep` of
    the in-distribution rows; with ``out_scores`` (the same names, OOD rows) the share of them
    it flags and the AUROC of every score for telling the two sets apart."""
    chosen = in_scores[score]
    threshold = threshold_for_share(chosen, keep)
    result = Calibration(
        score=score,
        threshold=float(threshold),
        keep=keep,
        in_rows=int(chosen.shape[0]),
        in_kept=float(kept_share(chosen, threshold)),
    )
    if out_scores is None:
        return result
    areas = {name: float(auroc(in_scores[name], out_scores[name])) for name in in_scores}
    return replace(
        result,
        out_rows=int(out_scores[score].shape[0]),
        out_flagged=1.0 - float(kept_share(out_scores[score], threshold)),
        auroc=areas,
    )


def calibrate_for_accuracy(
    in_stats: ClassificationStats, score: AbstentionScore, targets: Tensor, accuracy: float
) -> Calibration:
    """The threshold on `score` referring the fewest labelled rows (``targets: (B,)`` class
    indices) such that the rows kept have at least `accuracy` (``referral_for_target``);
    ValueError when no set of kept rows reaches it."""
    in_scores = uncertainty_score(in_stats, score)
    correct = (in_stats.mean.argmax(dim=-1) == targets).double()
    threshold = referral_for_target(in_scores, correct, accuracy)
    if threshold is None:
        raise ValueError(
            f"no threshold on {score} keeps rows with an accuracy of {accuracy:g} or more"
        )
    kept = in_scores.double() <= threshold
    return Calibration(
        score=score,
        threshold=threshold,
        keep=float(kept.double().mean()),
        in_rows=int(in_scores.shape[0]),
        in_kept=float(kept.double().mean()),
        retained_accuracy=float(correct[kept].mean()),
        target_accuracy=accuracy,
    )
