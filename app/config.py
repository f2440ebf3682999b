"""The one typed settings object.

Precedence, highest first: explicit overrides (e.g. CLI flags), ``MCDROP_*`` environment
variables, the YAML config file (``config/default.yaml`` unless ``MCDROP_CONFIG`` or ``--config``
names another), then the defaults below. Nothing is read at import time.
"""

from __future__ import annotations

import json
import os
import re
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

DEFAULT_CONFIG_FILE = Path("config/default.yaml")
DEFAULT_CI_LEVEL = 0.95
"""The interval level of a request that names none, and of the commands run locally."""
AUTO_WORKERS_MAX = 4
"""Most HTTP workers ``workers: 0`` starts, however many cores."""
_KEY_ENTRY = re.compile(r"[^:\s]+(:admin)?")
_config_file: ContextVar[Path | None] = ContextVar("mcdrop_config_file", default=None)


class Settings(BaseSettings):
    """Server settings. Every field can be set as ``MCDROP_<FIELD>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="MCDROP_", extra="forbid")

    host: str = "127.0.0.1"
    """Interface uvicorn binds to (``0.0.0.0`` in the container)."""

    port: int = Field(default=8080, ge=1, le=65535)
    """TCP port uvicorn listens on."""

    models_dir: Path = Path("models")
    """Model repository: one folder per model, each with a ``model.yaml`` card and weights."""

    workers: int = Field(default=0, ge=0)
    """HTTP worker processes uvicorn starts; metrics are summed over them through
    ``metrics_dir`` when above 1. With ``inference_process`` they share one inference process
    (the weights once); without it each worker loads every model and samples itself. 0 (the
    default): one per core, at most ``AUTO_WORKERS_MAX``, in front of the inference process;
    1 without one (each worker would load every model), or with a ``shutdown_delay_s`` (the
    not-ready delay is the single worker's). See :func:`http_workers`."""

    inference_process: bool = True
    """``mcdrop serve`` samples in a process of its own, apart from the HTTP worker(s): it holds
    every model's weights once and fuses the requests of every worker; the workers parse,
    decode and answer, so HTTP and sampling run on different cores (docs/benchmarks.md,
    "Inference apart from HTTP"). False: every worker samples in-process, as ``create_app``
    alone does (always so with ``model_control: explicit``, whose routes load models in the
    worker)."""

    inference_socket: Path | None = None
    """Set by ``mcdrop serve`` for its HTTP workers: the Unix socket of the inference process.
    None: the app loads its models and samples in-process."""

    metrics_dir: Path | None = None
    """Folder where worker processes share Prometheus metrics (exported to them as
    ``PROMETHEUS_MULTIPROC_DIR``) when ``workers`` > 1; its metric files are deleted at start.
    None: ``PROMETHEUS_MULTIPROC_DIR`` if set, else a new temporary folder."""

    log_level: Literal["debug", "info", "warning", "error"] = "info"
    """Log level of mcdrop and uvicorn."""

    max_rows_per_request: int = Field(default=256, ge=1)
    """Most input rows one prediction request may carry."""

    max_rows_per_evaluation: int = Field(default=10000, ge=1)
    """Most labelled rows one ``/v1/models/{name}/evaluate`` request may carry."""

    max_sample_rows: int = Field(default=16384, ge=1)
    """Most rows (input rows x MC samples) pushed through the model in one forward chunk;
    bounds peak memory of a sampling run."""

    default_ci_level: float = Field(default=DEFAULT_CI_LEVEL, gt=0.0, lt=1.0)
    """Interval level used when a request gives no ``ci_level``."""

    torch_threads: int = Field(default=0, ge=0)
    """Intra-op threads torch may use; 0: torch's own default in-process, and in the inference
    process the cores the HTTP workers leave (at least one, see :func:`inference_threads`)."""

    allocator_retain_mib: int = Field(default=1024, ge=0, le=2047)
    """Freed memory (MiB) the server process keeps for reuse instead of returning it to the OS
    (glibc malloc; see app/engine/allocator.py): forward calls then reuse pages rather than
    fault fresh ones in (on the inference thread about 10% of a folded BERT run, measured).
    0 keeps the C library's defaults."""

    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where models run: ``auto`` picks CUDA when a GPU is visible, else the CPU."""

    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """Precision of the weights and activations (statistics are always computed in float32)."""

    max_batch_rows: int = Field(default=8192, ge=1)
    """Most folded rows (input rows x samples) one fused run of concurrent requests may hold."""

    max_wait_ms: float = Field(default=0.0, ge=0.0)
    """The longest the oldest waiting request waits for others to fuse with before its run
    starts. 0: no wait; requests that queue while a run is going are fused anyway, and on a
    CPU the idle inference thread during a wait cost more than the fusion won (see
    docs/benchmarks.md)."""

    max_queue: int = Field(default=256, ge=1)
    """Requests that may wait per model; past it the server answers 503 with Retry-After."""

    request_timeout_s: float = Field(default=30.0, gt=0.0)
    """Deadline of one prediction request; past it the server answers 504 and drops its work."""

    default_tolerance: float = Field(default=0.01, gt=0.0)
    """Adaptive N (``"n_samples": "auto"``): target MC standard error when none is given."""

    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    """Largest request body accepted; larger ones get a 413 before they are read whole."""

    max_request_sample_rows: int = Field(default=262144, ge=1)
    """Most input rows x MC samples one request may ask for (bounds memory per request)."""

    api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """API keys; empty (and no key file) means no authentication. ``KEY`` may predict;
    ``KEY:admin`` may also use the model-repository routes."""

    api_key_file: Path | None = None
    """File with one API key per line (same ``KEY[:admin]`` form; ``#`` starts a comment)."""

    auth_health: bool = False
    """Require an API key on the health routes too (probes usually call them without one)."""

    auth_metrics: bool = False
    """Require an API key on ``/metrics`` too."""

    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Origins allowed by CORS; empty turns CORS off."""

    log_format: Literal["json", "text"] = "json"
    """Request and server logs as one JSON object per line, or as plain text."""

    opentelemetry: bool = False
    """FastAPI's OpenTelemetry bridge: request spans and metrics to the OpenTelemetry providers
    the process configures. Off by default (mcdrop exports Prometheus metrics itself, and the
    bridge costs every request a provider check even when no provider is configured)."""

    shutdown_delay_s: float = Field(default=0.0, ge=0.0)
    """On SIGTERM, report not-ready and keep serving this long before draining (lets load
    balancers stop sending traffic first)."""

    max_dense_values: int = Field(default=100_000_000, ge=1)
    """Most float32-sized values one prediction of a segmentation model may hold at once: its
    rows x the passes of one round x C x H x W outputs (the passes are summed round by round),
    its sums and maps, and every pass with ``return_samples``
    (``app.tasks.segmentation.Segmentation.held_values``). Checked from the request's rows, N
    and the model's output size before sampling; larger requests get 422 naming it."""

    max_evaluation_values: int = Field(default=10_000_000, ge=1)
    """Most values (rows x MC samples x model outputs) one evaluation request may hold: every
    pass of every row is kept to score it, so this bounds an evaluation's memory (see the
    worst-case memory in docs/settings.md). Larger requests are refused up front with 422."""

    model_control: Literal["none", "explicit"] = "none"
    """Like Triton's model-control mode: ``none`` refuses the repository's load and unload
    routes (403); ``explicit`` allows them to admin keys (to anyone when no key is set, which
    is logged as a warning at start: loading a folder runs its Python code)."""

    require_auth: bool = False
    """Refuse to start without an API key (the container images and manifests set it)."""

    header_timeout_s: float = Field(default=10.0, gt=0.0)
    """A connection whose request line and headers have not all arrived this long after it
    opened (or after its previous answer) is closed, so slow clients cannot hold it open."""

    body_timeout_s: float = Field(default=10.0, gt=0.0)
    """Longest wait for the next piece of a request body; past it the answer is 408 and the
    connection is closed. The whole body must also arrive within ``request_timeout_s``."""

    feedback_max_predictions: int = Field(default=10000, ge=0)
    """Recent /v1 predictions kept (per worker) for labelled feedback; the oldest go first.
    0 turns the feedback store off."""

    feedback_max_age_s: float = Field(default=3600.0, gt=0.0)
    """A prediction older than this can no longer receive feedback (410)."""

    feedback_max_bytes: int = Field(default=64 * 1024 * 1024, ge=0)
    """Memory (bytes, per worker) the held predictions may take together, counted as their
    tensors plus measured per-object overheads; the oldest go first. A prediction larger than
    this alone is not held (its answer has no ``prediction_id``)."""

    max_rows_per_rank: int = Field(default=4096, ge=1)
    """Most rows one ``/v1/models/{name}/rank`` request may carry. They are sampled in steps
    of at most ``max_batch_rows`` folded rows and only the best rows are kept, so a rank
    request holds its rows plus, for batchbald, the passes of its candidates."""

    max_rank_candidates: int = Field(default=1000, ge=1)
    """Largest BatchBALD candidate set one rank request may ask for (``candidates``): their
    passes (candidates x N x classes) are held, and the greedy selection's time grows with it."""

    ui: bool = True
    """Serve the web page at ``/`` (try any model, watch its uncertainty) and its assets under
    ``/ui/``; false for locked-down deployments. The page calls the API with the key a person
    types in, so it grants nothing by itself."""

    max_image_pixels: int = Field(default=16_777_216, ge=1)
    """Largest image (width x height) an image model decodes, and the largest any resize of it
    may make; larger ones are refused from their header, before decoding (decompression
    bombs, and tiny images a resize would blow up)."""

    decode_threads: int = Field(default=2, ge=1, le=64)
    """Threads that turn request bodies into tensors (image decoding, tokenizing) off the event
    loop, within each request's deadline; at most this many images are decoded at once, which
    bounds the memory decoding takes (docs/settings.md: worst-case memory)."""

    max_rank_selection_work: float = Field(default=2e11, gt=0)
    """Most work BatchBALD's greedy selection of one rank request may take, in multiply-adds:
    k x configurations x candidates x classes x (N + 100), configurations max(1000, N)
    (``app.engine.batchbald.selection_work``); larger requests get 422 up front. The default
    is at most about 56 s of one core of the development machine (3.6e9 per second measured at
    N = 100, faster at larger N). The selection stops between picks at the deadline, and one
    pick (at most a k-th of the work) is the longest another request waits behind it."""

    @field_validator("api_keys", "cors_origins", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        """``MCDROP_API_KEYS=k1,k2:admin`` or a JSON list ``["k1", "k2:admin"]``, as well as a
        YAML list."""
        if isinstance(value, str) and value.lstrip().startswith("["):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                raise ValueError("not a JSON list; give a JSON list or a comma list") from None
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError("a JSON list of strings, or a comma-separated list")
            return [item.strip() for item in value if item.strip()]
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("api_keys")
    @classmethod
    def _key_entries(cls, value: list[str]) -> list[str]:
        """Every entry is ``KEY`` or ``KEY:admin`` (the key itself is never echoed)."""
        for index, entry in enumerate(value):
            if _KEY_ENTRY.fullmatch(entry) is None:
                raise ValueError(f"entry {index + 1} is not KEY or KEY:admin")
        return value

    @model_validator(mode="after")
    def _keys_when_required(self) -> Settings:
        if self.require_auth and not self.api_keys and self.api_key_file is None:
            raise ValueError(
                "require_auth is on but no key is set: give MCDROP_API_KEYS or "
                "MCDROP_API_KEY_FILE (entries KEY or KEY:admin)"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        path = _config_file.get()
        if path is None:
            return (init_settings, env_settings)
        yaml_source = YamlConfigSettingsSource(settings_cls, yaml_file=path)
        return (init_settings, env_settings, yaml_source)


def load_settings(config_file: Path | str | None = None, **overrides: Any) -> Settings:
    """Build the settings from overrides, environment, the YAML file and defaults (that order)."""
    path = _resolve_config_file(config_file)
    token = _config_file.set(path)
    try:
        return Settings(**overrides)
    finally:
        _config_file.reset(token)


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, which containers narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def http_workers(settings: Settings) -> int:
    """The HTTP workers ``mcdrop serve`` starts: ``workers``, or for 0 one per core (at most
    ``AUTO_WORKERS_MAX``) when an inference process samples for them (the weights stay once),
    else 1. Measured on 2 cores, digits-cnn at 32 and 128 clients: 2 workers answer 1.06x and
    1.18x the requests of 1, for ~360 MiB more (docs/benchmarks.md)."""
    if settings.workers:
        return settings.workers
    shared = settings.inference_process and settings.model_control != "explicit"
    if not shared or settings.shutdown_delay_s > 0:
        return 1
    return max(1, min(usable_cores(), AUTO_WORKERS_MAX))


def inference_threads(settings: Settings, workers: int) -> int:
    """The inference process's intra-op threads: ``torch_threads``, or for 0 the cores the
    ``workers`` HTTP workers leave, at least one. On 2 cores with 2 workers that is 1: a second
    torch thread there spins on the cores the workers need (digits-cnn at 32 clients: 712 vs
    907 requests/s)."""
    return settings.torch_threads or max(1, usable_cores() - workers)


def _resolve_config_file(config_file: Path | str | None) -> Path | None:
    if config_file is not None:
        path = Path(config_file)
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        return path
    from_env = os.environ.get("MCDROP_CONFIG")
    if from_env:
        return _resolve_config_file(from_env)
    return DEFAULT_CONFIG_FILE if DEFAULT_CONFIG_FILE.is_file() else None


def settings_problem(exc: ValidationError) -> str:
    """One line naming each refused setting and why (values are not repeated: keys are secret)."""
    parts = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error.get("loc", ()))
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{where}: {message}" if where else message)
    return "settings: " + "; ".join(parts)
