"""``POST /v1/models/{name}/rank``: which of these rows to label next."""

from __future__ import annotations

from fastapi import APIRouter

from app.api.deps import DataPlaneDep
from app.api.rank_schemas import RankRequest, RankResponse
from app.dataplane import PredictOptions
from app.dataplane.ranking import RankQuery

router = APIRouter(prefix="/v1", tags=["ranking"])


@router.post("/models/{name}/rank", name="v1_rank")
async def rank(name: str, body: RankRequest, dataplane: DataPlaneDep) -> RankResponse:
    """The k rows most worth labelling under an acquisition strategy (BALD, BatchBALD, ...)."""
    options = PredictOptions(n_samples=body.n_samples, seed=body.seed)
    query = RankQuery(k=body.k, strategy=body.strategy, candidates=body.candidates)
    model, ranking = await dataplane.rank(name, body.inputs, options, query, endpoint="v1_rank")
    return RankResponse(
        model=model.name,
        version=model.version,
        selected=ranking.selected,
        scores=ranking.scores,
        strategy=ranking.strategy,
        n_samples=ranking.n_samples,
        seed=ranking.seed,
    )
