"""The data plane: what every route's work goes through between the API and the engine.

``policy`` (defaults and limits, pure), ``plane`` (admission, deadlines, draining; predict,
evaluate and any admitted job), ``batcher`` (concurrent predictions fused into one sampling run),
``step`` (one function of an admitted job, within its deadline), ``evaluation`` (an
evaluation as short steps), ``worker`` (the inference thread) and
``accounting`` (request metrics).

A route uses one ``DataPlane``: ``await plane.predict(name, rows, options, endpoint)`` for
anything that is a prediction (fused with concurrent requests, isolated from them);
``await plane.run(name, endpoint, work)`` runs ``work(model)`` as one admitted job on the
inference thread; both are admitted (``max_queue``, deadline, draining) and counted under
``endpoint``. A refusal before the plane is counted with ``plane.count_refused``.
"""

from __future__ import annotations

from app.dataplane.accounting import Accounting, outcome_of
from app.dataplane.plane import DataPlane
from app.dataplane.policy import PredictOptions, RequestPolicy
from app.dataplane.step import Step

__all__ = ["Accounting", "DataPlane", "PredictOptions", "RequestPolicy", "Step", "outcome_of"]
