"""Live coverage from labelled feedback: recent predictions held in a bounded store
(`store`), the labels that arrive later matched against them, and the scores those labels give
(`scores`).

Transport-neutral (no FastAPI): the data plane finds the held rows (`FeedbackStore.find` or
`find_rows`), scores them (`score_matches`), settles them, then `record_feedback`. A prediction
pushed out, expired or already labelled answers `FeedbackGoneError` (410), one never held, or
held for another API key, `FeedbackNotFoundError` (404).
"""

from __future__ import annotations

from app.feedback.scores import (
    PREDICTION_SET,
    FeedbackScore,
    Match,
    brier_scores,
    combine,
    gaussian_log_likelihood,
    interval_hits,
    record_feedback,
    score_feedback,
    score_matches,
    set_hits,
)
from app.feedback.store import (
    CONFORMAL,
    PREDICTIVE,
    FeedbackStore,
    HeldPrediction,
    Owner,
    held_prediction,
    new_prediction_id,
    row_keys,
)

__all__ = [
    "CONFORMAL",
    "PREDICTION_SET",
    "PREDICTIVE",
    "FeedbackScore",
    "FeedbackStore",
    "HeldPrediction",
    "Match",
    "Owner",
    "brier_scores",
    "combine",
    "gaussian_log_likelihood",
    "held_prediction",
    "interval_hits",
    "new_prediction_id",
    "record_feedback",
    "row_keys",
    "score_feedback",
    "score_matches",
    "set_hits",
]
