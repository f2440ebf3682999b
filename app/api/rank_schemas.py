"""Request and response bodies of ``POST /v1/models/{name}/rank``."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from app.engine.acquisition import Strategy


class RankRequest(BaseModel):
    """Candidate rows and how many of them to pick for labelling (integers are strict: ``true``
    is not 1)."""

    model_config = ConfigDict(extra="forbid")

    inputs: list[Any] = Field(
        min_length=1,
        description="Unlabelled rows, each a (nested) list of numbers of the model's input shape.",
    )
    k: StrictInt = Field(
        default=10, ge=1, description="How many rows to pick (at most the rows sent)."
    )
    strategy: Strategy = Field(
        default="bald",
        description="bald, batchbald, entropy, variation_ratio, margin, least_confidence "
        "(classification) or std (regression).",
    )
    n_samples: Annotated[StrictInt, Field(ge=1)] | None = Field(
        default=None, description="MC passes; the model's default when omitted."
    )
    seed: Annotated[StrictInt, Field(ge=0, lt=2**63)] | None = Field(
        default=None, description="Same rows, seed and N give the same picks."
    )
    candidates: Annotated[StrictInt, Field(ge=1)] | None = Field(
        default=None,
        description="batchbald only: choose among this many top rows by BALD "
        "(default max(10 k, 100)).",
    )


class RankResponse(BaseModel):
    """The rows to label next, best first."""

    model: str
    version: str
    selected: list[int] = Field(description="Row indices into `inputs`, best first.")
    scores: list[float] = Field(
        description="Each pick's score; for batchbald the gain in joint mutual information."
    )
    strategy: Strategy
    n_samples: int
    seed: int
