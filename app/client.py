"""A typed Python client for mcdrop's native ``/v1`` API (synchronous, on httpx).

    with McdropClient("http://127.0.0.1:8080") as client:
        for model in client.models():
            print(model.name, model.task, model.ready)
        result = client.predict("digits-mlp", [[0.0] * 64], n_samples=100, seed=0)
        print(result.predictions[0].mean)

Every failure raises :class:`McdropClientError` with the HTTP status (None when the server could
not be reached) and the server's message. It is the one HTTP client of the ``mcdrop`` commands.

Listing models needs no torch: the prediction and evaluation schemas (whose modules import the
engine) are imported on first use, so ``mcdrop models`` starts fast.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

import httpx

# The results are the server's own response schemas, so client and server cannot drift apart.
from app.api.model_schemas import ModelInfo, ModelList

if TYPE_CHECKING:
    from app.api.rank_schemas import RankResponse
    from app.api.schemas import (
        ClassificationRow,
        EvaluateResponse,
        MultilabelRow,
        PredictResponse,
        RegressionRow,
        SegmentationRow,
        TokenRow,
    )

__all__ = [
    "ClassificationRow",
    "EvaluateResponse",
    "McdropClient",
    "McdropClientError",
    "ModelInfo",
    "MultilabelRow",
    "PredictResponse",
    "RegressionRow",
    "SegmentationRow",
    "TokenRow",
]

DEFAULT_URL = "http://127.0.0.1:8080"
_LAZY_SCHEMAS = {
    "ClassificationRow",
    "EvaluateResponse",
    "MultilabelRow",
    "PredictResponse",
    "RegressionRow",
    "SegmentationRow",
    "TokenRow",
}


def __getattr__(name: str) -> Any:
    """The prediction schemas, imported on first use (they bring torch with them)."""
    if name in _LAZY_SCHEMAS:
        from app.api import schemas

        return getattr(schemas, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class McdropClientError(Exception):
    """A request failed: ``status`` is the HTTP status, or None if no answer came back."""

    def __init__(self, status: int | None, message: str) -> None:
        super().__init__(f"{status}: {message}" if status is not None else message)
        self.status = status
        self.message = message


class McdropClient:
    """Talks to one mcdrop server. Use it as a context manager, or call :meth:`close`."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        timeout: float = 60.0,
        http: httpx.Client | None = None,
        api_key: str | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        headers = {"authorization": f"Bearer {api_key}"} if api_key else None
        if http is None:
            http = httpx.Client(base_url=self.url, timeout=timeout, headers=headers)
        elif headers is not None:
            http.headers.update(headers)
        self._http = http

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
        from app.api.schemas import PredictResponse

        payload: dict[str, Any] = {"inputs": list(inputs)}
        options = {"n_samples": n_samples, "seed": seed, "ci_level": ci_level}
        payload.update({key: value for key, value in options.items() if value is not None})
        body = self._request("POST", f"/v1/models/{model}/predict", json=payload)
        return PredictResponse.model_validate(body)

    def evaluate(
        self, model: str, inputs: Sequence[Any], targets: Sequence[Any], **options: Any
    ) -> EvaluateResponse:
        """Metrics of the model's predictions and uncertainty on labelled rows; ``options`` are
        the other fields of the evaluate request (``n_samples``, ``seed``, ``ci_level``,
        ``ranking_score``, ...), left out when None."""
        from app.api.schemas import EvaluateResponse

        payload: dict[str, Any] = {"inputs": list(inputs), "targets": list(targets)}
        payload.update({key: value for key, value in options.items() if value is not None})
        body = self._request("POST", f"/v1/models/{model}/evaluate", json=payload)
        return EvaluateResponse.model_validate(body)

    def rank(
        self,
        model: str,
        inputs: Sequence[Any],
        *,
        k: int,
        strategy: str = "bald",
        n_samples: int | None = None,
        seed: int | None = None,
        candidates: int | None = None,
    ) -> RankResponse:
        """The k rows of ``inputs`` most worth labelling (``POST /v1/models/{model}/rank``)."""
        from app.api.rank_schemas import RankResponse

        payload: dict[str, Any] = {"inputs": list(inputs), "k": k, "strategy": strategy}
        options = {"n_samples": n_samples, "seed": seed, "candidates": candidates}
        payload.update({key: value for key, value in options.items() if value is not None})
        body = self._request("POST", f"/v1/models/{model}/rank", json=payload)
        return RankResponse.model_validate(body)

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
        return self.predict_files(
            model, images, field="image", n_samples=n_samples, seed=seed, ci_level=ci_level
        )

    def predict_files(
        self,
        model: str,
        files: Sequence[tuple[str, bytes]],
        *,
        field: str,
        n_samples: int | None = None,
        seed: int | None = None,
        ci_level: float | None = None,
    ) -> PredictResponse:
        """Uncertainty for each encoded file (``(file name, bytes)``), sent as
        ``multipart/form-data`` files of ``field``: the one the model's input names
        (``model(name).input.files.field``: ``image``, ``audio``)."""
        from app.api.schemas import PredictResponse

        parts = [(field, (name, data)) for name, data in files]
        options = {"n_samples": n_samples, "seed": seed, "ci_level": ci_level}
        form = {key: str(value) for key, value in options.items() if value is not None}
        body = self._request("POST", f"/v1/models/{model}/predict", files=parts, data=form)
        return PredictResponse.model_validate(body)

    def _request(self, method: str, path: str, json: Any = None, **content: Any) -> Any:
        try:
            response = self._http.request(method, path, json=json, **content)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from exc
        if response.is_success:
            try:
                return response.json()
            except ValueError:
                raise McdropClientError(response.status_code, "the answer is not JSON") from None
        try:
            message = str(response.json()["error"])
        except (ValueError, KeyError, TypeError):
            message = response.text or response.reason_phrase
        raise McdropClientError(response.status_code, message)

    def _unreachable(self, exc: httpx.HTTPError) -> McdropClientError:
        return McdropClientError(None, f"cannot reach mcdrop at {self.url}: {exc}")
