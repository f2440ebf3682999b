"""The data plane: what every route's work goes through between the API and the engine.

``policy`` (defaults and limits, pure), ``plane`` (admission, deadlines, draining; predict,
evaluate and any admitted job), ``batcher`` (concurrent predictions fused into one sampling run),
``evaluation`` (an evaluation as short steps), ``worker`` (the inference thread) and
``accounting`` (request metrics).
"""

from __future__ import annotations

from app.dataplane.accounting import Accounting, outcome_of
from app.dataplane.plane import DataPlane, Step
from app.dataplane.policy import PredictOptions, RequestPolicy

__all__ = ["Accounting", "DataPlane", "PredictOptions", "RequestPolicy", "Step", "outcome_of"]
