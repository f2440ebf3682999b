"""A typed Python client for mcdrop's native ``/v1`` API (synchronous, on httpx).

    with McdropClient("http://127.0.0.1:8080") as client:
        for model in client.models():
            print(model.name, model.task, model.ready)
        result = client.predict("digits-mlp", [[0.0] * 64], n_samples=100, seed=0)
        print(result.rows[0].mutual_information)

Every failure raises :class:`McdropClientError` with the HTTP status (None when the server could
not be reached) and the server's message.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Literal, TypeVar

import httpx

DEFAULT_URL = "http://127.0.0.1:8080"

_Row = TypeVar("_Row")


class McdropClientError(Exception):
    """A request failed: ``status`` is the HTTP status, or None if no answer came back."""

    def __init__(self, status: int | None, message: str) -> None:
        super().__init__(f"{status}: {message}" if status is not None else message)
        self.status = status
        self.message = message


@dataclasses.dataclass(frozen=True)
class ModelSummary:
    """One model of the server's repository; ``error`` says why a model is not ready."""

    name: str
    version: str | None
    task: str | None
    ready: bool
    error: str | None = None
    description: str | None = None
    input_shape: list[int] | None = None
    output_shape: list[int] | None = None
    labels: list[str] | None = None
    default_n_samples: int | None = None
    max_n_samples: int | None = None
    dropout_layers: int = 0
    prefix_fraction: float = 0.0


@dataclasses.dataclass(frozen=True)
class ClassificationRow:
    """Uncertainty of one classified row; per-class lists have one value per class."""

    mean: list[float]
    std: list[float]
    ci_lower: list[float]
    ci_upper: list[float]
    predicted_class: int
    label: str | None
    confidence: float
    predictive_entropy: float
    expected_entropy: float
    mutual_information: float
    variation_ratio: float


@dataclasses.dataclass(frozen=True)
class RegressionRow:
    """Uncertainty of one regressed row; each list has one value per output."""

    mean: list[float]
    epistemic_variance: list[float]
    aleatoric_variance: list[float]
    variance: list[float]
    std: list[float]
    ci_lower: list[float]
    ci_upper: list[float]
    pi_lower: list[float]
    pi_upper: list[float]


@dataclasses.dataclass(frozen=True)
class Prediction:
    """The answer to one predict call: the options used and one row per input row."""

    model: str
    version: str
    task: Literal["classification", "regression"]
    n_samples: int
    seed: int
    ci_level: float
    rows: list[ClassificationRow] | list[RegressionRow]


class McdropClient:
    """Talks to one mcdrop server. Use it as a context manager, or call :meth:`close`."""

    def __init__(
        self, url: str = DEFAULT_URL, timeout: float = 60.0, http: httpx.Client | None = None
    ) -> None:
        self.url = url.rstrip("/")
        self._http = http if http is not None else httpx.Client(base_url=self.url, timeout=timeout)

    def __enter__(self) -> McdropClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def ready(self) -> bool:
        """True when the server has finished start-up and serves at least one model."""
        try:
            return self._http.get("/v2/health/ready").status_code == 200
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from exc

    def models(self) -> list[ModelSummary]:
        """Every model of the server, ready or not."""
        body = self._request("GET", "/v1/models")
        return [_build(ModelSummary, item) for item in body["models"]]

    def model(self, name: str) -> ModelSummary:
        """One model's description."""
        return _build(ModelSummary, self._request("GET", f"/v1/models/{name}"))

    def predict(
        self,
        model: str,
        inputs: Sequence[Any],
        *,
        n_samples: int | None = None,
        seed: int | None = None,
        ci_level: float | None = None,
    ) -> Prediction:
        """Mean prediction and uncertainty for each input row (nested lists of numbers)."""
        payload: dict[str, Any] = {"inputs": list(inputs)}
        options = {"n_samples": n_samples, "seed": seed, "ci_level": ci_level}
        payload.update({key: value for key, value in options.items() if value is not None})
        body = self._request("POST", f"/v1/models/{model}/predict", json=payload)
        row_type = ClassificationRow if body["task"] == "classification" else RegressionRow
        rows: list[Any] = [_build(row_type, item) for item in body["predictions"]]
        return Prediction(
            model=body["model"],
            version=body["version"],
            task=body["task"],
            n_samples=body["n_samples"],
            seed=body["seed"],
            ci_level=body["ci_level"],
            rows=rows,
        )

    def _request(self, method: str, path: str, json: Any = None) -> Any:
        try:
            response = self._http.request(method, path, json=json)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from exc
        if response.is_success:
            return response.json()
        try:
            message = str(response.json()["error"])
        except (ValueError, KeyError, TypeError):
            message = response.text or response.reason_phrase
        raise McdropClientError(response.status_code, message)

    def _unreachable(self, exc: httpx.HTTPError) -> McdropClientError:
        return McdropClientError(None, f"cannot reach mcdrop at {self.url}: {exc}")


def _build(cls: type[_Row], data: dict[str, Any]) -> _Row:
    """An instance of the dataclass ``cls`` from the JSON fields it declares (others ignored)."""
    names = {field.name for field in dataclasses.fields(cls)}  # type: ignore[arg-type]
    return cls(**{key: value for key, value in data.items() if key in names})
