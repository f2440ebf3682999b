"""Domain errors. Each carries the HTTP status it maps to; the API turns them into one envelope.

This module is plain Python (no FastAPI) so the engine and the registry can raise these errors.
"""

from __future__ import annotations


class McdropError(Exception):
    """Base class of every error mcdrop reports to a client."""

    status_code: int = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInputError(McdropError):
    """The request is well-formed JSON but its content breaks a rule (shape, range, limit)."""

    status_code = 422

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class NotAcceptableError(McdropError):
    """The client asked (Accept) for a media type this model's answers do not come in."""

    status_code = 406


class InvalidTensorError(McdropError):
    """An Open Inference Protocol request breaks the protocol or the model's contract: wrong
    tensor name, datatype, shape or data length. The protocol answers these with 400."""

    status_code = 400


class ModelNotFoundError(McdropError):
    """No model of that name (or version) is in the repository."""

    status_code = 404

    def __init__(self, name: str, version: str | None = None) -> None:
        what = f"model '{name}'" if version is None else f"model '{name}' version '{version}'"
        super().__init__(f"{what} not found")
        self.name = name


class ModelNotReadyError(McdropError):
    """The model exists in the repository but could not be loaded."""

    status_code = 503

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"model '{name}' is not ready: {reason}")
        self.name = name
        self.reason = reason


class ModelLoadError(McdropError):
    """A model folder is invalid: bad card, missing or corrupt weights, no dropout."""

    status_code = 500


class OverloadedError(McdropError):
    """The model's queue is full; the client should retry after ``retry_after`` seconds."""

    status_code = 503

    def __init__(self, name: str, max_queue: int, retry_after: int = 1) -> None:
        super().__init__(
            f"model '{name}' is overloaded: {max_queue} requests already waiting (max_queue)"
        )
        self.retry_after = retry_after


class DeadlineExceededError(McdropError):
    """The request did not finish within its deadline; its pending work was dropped."""

    status_code = 504

    def __init__(self, seconds: float) -> None:
        super().__init__(f"the request did not finish within {seconds:g} s (request_timeout_s)")


class InferenceUnavailableError(McdropError):
    """The inference process that samples for this HTTP worker is gone."""

    status_code = 503

    def __init__(self) -> None:
        super().__init__("the inference process is not available")


class ShuttingDownError(McdropError):
    """The server is shutting down and takes no new work."""

    status_code = 503

    def __init__(self) -> None:
        super().__init__("the server is shutting down")


class UnauthorizedError(McdropError):
    """No API key, or one the server does not know (HTTP 401)."""

    status_code = 401

    def __init__(self) -> None:
        super().__init__("a valid API key is required (Authorization: Bearer KEY or X-API-Key)")


class ForbiddenError(McdropError):
    """A known API key without the role this route needs (HTTP 403)."""

    status_code = 403

    def __init__(self, role: str) -> None:
        super().__init__(f"this API key may not use this route (needs the '{role}' role)")


class ClientDisconnectedError(McdropError):
    """The client went away before its answer was ready; its work was cancelled. Nobody reads
    the answer: the status (nginx's 499) is for logs and metrics."""

    status_code = 499

    def __init__(self) -> None:
        super().__init__("the client disconnected; its work was cancelled")


class ModelControlOffError(McdropError):
    """The repository's load and unload routes are off (``model_control: none``)."""

    status_code = 403

    def __init__(self) -> None:
        super().__init__(
            "model control is off (model_control: none): loading and unloading models "
            "needs model_control: explicit"
        )


class FeedbackNotFoundError(McdropError):
    """Feedback for a prediction the server never held (unknown request id or row)."""

    status_code = 404


class FeedbackGoneError(McdropError):
    """Feedback for a prediction no longer held: too old, pushed out, or already labelled."""

    status_code = 410
