"""The Monte Carlo options of a request, declared once: v1 predict and evaluate take them at the
top of the body, v2 inference in ``parameters``. Integers are strict (``true`` is not 1)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, StrictInt

from app.dataplane import PredictOptions

SamplesOption = Annotated[StrictInt, Field(ge=1)] | Literal["auto"] | None


class MCOptions(BaseModel):
    """N (fixed or adaptive), seed and interval level."""

    n_samples: SamplesOption = Field(
        default=None,
        description='MC passes; the model\'s default when omitted; "auto" samples until the '
        "MC standard error of the mean is within `tolerance`.",
    )
    tolerance: float | None = Field(
        default=None,
        gt=0.0,
        strict=True,
        description='With "auto": target MC standard error of the mean.',
    )
    max_n_samples: Annotated[StrictInt, Field(ge=1)] | None = Field(
        default=None, description='With "auto": cap on N (the model\'s maximum by default).'
    )
    seed: Annotated[StrictInt, Field(ge=0, lt=2**63)] | None = Field(
        default=None, description="Same inputs, seed and N give identical numbers."
    )
    ci_level: float | None = Field(
        default=None, gt=0.0, lt=1.0, strict=True, description="Level of the returned intervals."
    )

    def options(self, return_samples: bool = False) -> PredictOptions:
        """The data plane's view of these options."""
        return PredictOptions(
            n_samples=self.n_samples,
            seed=self.seed,
            ci_level=self.ci_level,
            return_samples=return_samples,
            tolerance=self.tolerance,
            max_n_samples=self.max_n_samples,
        )
