"""A typed Python client for mcdrop's native ``/v1`` API (synchronous, on httpx).

    with McdropClient("http://127.0.0.1:8080") as client:
        for model in client.models():
            print(model.name, model.task, model.ready)
        result = client.predict("digits-mlp", [[0.0] * 64], n_samples=100, seed=0)
        print(result.predictions[0].mean)

Every failure raises :class:`McdropClientError` with the HTTP status (None when the server could
not be reached) and the server's message.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Any

import httpx

# The results are the server's own response schemas, so client and server cannot drift apart.
from app.api.schemas import ClassificationRow, ModelInfo, ModelList, PredictResponse, RegressionRow

__all__ = [
    "ClassificationRow",
    "McdropClient",
    "McdropClientError",
    "ModelInfo",
    "PredictResponse",
    "RegressionRow",
]

DEFAULT_URL = "http://127.0.0.1:8080"


class McdropClientError(Exception):
    """A request failed: ``status`` is the HTTP status, or None if no answer came back."""

    def __init__(self, status: int | None, message: str) -> None:
        super().__init__(f"{status}: {message}" if status is not None else message)
        self.status = status
        self.message = message


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

    def models(self) -> list[ModelInfo]:
        """Every model of the server, ready or not."""
        return ModelList.model_validate(self._request("GET", "/v1/models")).models

    def model(self, name: str) -> ModelInfo:
        """One model's description."""
        return ModelInfo.model_validate(self._request("GET", f"/v1/models/{name}"))

    def predict(
        self,
        model: str,
        inputs: Sequence[Any],
        *,
        n_samples: int | None = None,
        seed: int | None = None,
        ci_level: float | None = None,
    ) -> PredictResponse:
        """Mean prediction and uncertainty for each input row (nested lists of numbers);
        ``predictions`` holds a ClassificationRow or RegressionRow per row."""
        payload: dict[str, Any] = {"inputs": list(inputs)}
        options = {"n_samples": n_samples, "seed": seed, "ci_level": ci_level}
        payload.update({key: value for key, value in options.items() if value is not None})
        body = self._request("POST", f"/v1/models/{model}/predict", json=payload)
        return PredictResponse.model_validate(body)

    def predict_images(
        self,
        model: str,
        images: Sequence[tuple[str, bytes]],
        *,
        n_samples: int | None = None,
        seed: int | None = None,
        ci_level: float | None = None,
    ) -> PredictResponse:
        """Uncertainty for each encoded image (``(file name, PNG/JPEG/WebP bytes)``), sent as
        ``multipart/form-data`` ``image`` files to an image model."""
        files = [("image", (name, data)) for name, data in images]
        options = {"n_samples": n_samples, "seed": seed, "ci_level": ci_level}
        form = {key: str(value) for key, value in options.items() if value is not None}
        body = self._request("POST", f"/v1/models/{model}/predict", files=files, data=form)
        return PredictResponse.model_validate(body)

    def _request(self, method: str, path: str, json: Any = None, **content: Any) -> Any:
        try:
            response = self._http.request(method, path, json=json, **content)
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
