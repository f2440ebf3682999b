"""Property-based fuzzing of the HTTP API from its own OpenAPI schema (schemathesis).

A real `mcdrop serve` process on loopback receives generated requests for every documented
operation; no answer may be a server error.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import Case
from schemathesis.checks import not_a_server_error

from tests.support import BUNDLED_MODELS, REPO_ROOT, free_port, wait_ready


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "MCDROP_LOG_LEVEL": "warning", "MCDROP_MAX_REQUEST_SAMPLE_ROWS": "20000"}
    command = [sys.executable, "-m", "app.cli", "serve", "--port", str(port)]
    process = subprocess.Popen(
        [*command, "--models-dir", str(BUNDLED_MODELS)],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)


MODELS = ["digits-mlp", "digits-cnn", "diabetes-mlp"]
SHAPES = {"digits-mlp": (64,), "digits-cnn": (1, 8, 8), "diabetes-mlp": (10,)}
FUZZ = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
    derandomize=True,
)


def _with_real_model(case: Case[Any], name: str) -> Case[Any]:
    if case.path_parameters and "name" in case.path_parameters:
        case.path_parameters["name"] = name
    return case


def test_no_server_errors_from_the_openapi_schema(server_url: str) -> None:
    schema = schemathesis.openapi.from_url(f"{server_url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    assert len(operations) >= 8
    # unloading would leave the rest of the run with no model to call: tested on its own
    operations = [op for op in operations if not op.path.endswith("/unload")]
    labels = []
    for operation in operations:
        strategy = st.builds(_with_real_model, operation.as_strategy(), st.sampled_from(MODELS))

        @given(case=strategy)
        @FUZZ
        def no_server_error(case: Case[Any]) -> None:
            case.call_and_validate(checks=[not_a_server_error])

        no_server_error()
        labels.append(operation.label)
    assert "POST /v1/models/{name}/predict" in labels


def _rows(shape: tuple[int, ...], count: int) -> st.SearchStrategy[list[object]]:
    value = (
        st.floats(min_value=-1e30, max_value=1e30, allow_nan=False)
        | st.integers(-99, 99)
        # Beyond float32, beyond float64: refused (422), never a 200 with nulls.
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.integers(-(10**400), 10**400)
    )
    row: st.SearchStrategy[object] = value
    for size in reversed(shape):
        row = st.lists(row, min_size=size, max_size=size)
    return st.lists(row, min_size=1, max_size=count)


@st.composite
def _predict_bodies(draw: st.DrawFn) -> tuple[str, dict[str, object]]:
    name = draw(st.sampled_from(MODELS))
    body: dict[str, object] = {"inputs": draw(_rows(SHAPES[name], 4))}
    if draw(st.booleans()):
        body["n_samples"] = draw(st.integers(-2, 2100) | st.just("auto"))
    if body.get("n_samples") == "auto" and draw(st.booleans()):
        body["tolerance"] = draw(st.floats(min_value=1e-4, max_value=10) | st.just(5e-324))
        body["max_n_samples"] = draw(st.integers(1, 300))
    for key, strategy in (
        ("seed", st.integers(-1, 2**64)),
        ("ci_level", st.floats(-0.5, 1.5) | st.just(0.9999999999999999)),
        ("return_samples", st.booleans()),
    ):
        if draw(st.booleans()):
            body[key] = draw(strategy)
    return name, body


def test_no_server_errors_for_well_shaped_predictions(server_url: str) -> None:
    statuses: set[int] = set()
    with httpx.Client(base_url=server_url, timeout=60) as client:

        @given(request=_predict_bodies())
        @settings(FUZZ, max_examples=150)
        def well_shaped(request: tuple[str, dict[str, object]]) -> None:
            name, body = request
            response = client.post(f"/v1/models/{name}/predict", json=body)
            statuses.add(response.status_code)
            assert response.status_code < 500, response.text
            assert "null" not in response.text
            if response.status_code == 200:
                for row in response.json()["predictions"]:
                    assert all(
                        lo <= hi for lo, hi in zip(row["ci_lower"], row["ci_upper"], strict=True)
                    )

        well_shaped()
    assert {200, 422} <= statuses


PROBES: list[tuple[str, dict[str, Any]]] = [
    ("diabetes-mlp/predict", {"inputs": [[0.1] * 10], "ci_level": 0.9999999999999999}),
    ("diabetes-mlp/predict", {"inputs": [[0.1] * 10], "n_samples": "auto", "tolerance": 5e-324}),
    ("diabetes-mlp/predict", {"inputs": [[1e308] * 10], "n_samples": "auto"}),
    ("digits-mlp/predict", {"inputs": [[1e39] * 64]}),
    ("digits-mlp/predict", {"inputs": [[10**400] * 64]}),
    ("digits-mlp/predict", {"inputs": [[1.0] * 64], "n_samples": True}),
    ("digits-mlp/evaluate", {"inputs": [[1.0] * 64], "targets": ["\u00b2"]}),
    ("digits-mlp/evaluate", {"inputs": [[1.0] * 64], "targets": ["7" * 5000]}),
    ("diabetes-mlp/evaluate", {"inputs": [[0.1] * 10], "targets": [10**400]}),
    ("digits-mlp/evaluate", {"inputs": [[1.0] * 64], "targets": [1], "coverages": [0.5] * 300_000}),
    ("digits-mlp/evaluate", {"inputs": [[1.0] * 64] * 10_000, "targets": [1] * 10_000,
                             "n_samples": 1048}),
]  # fmt: skip


@pytest.mark.parametrize(("route", "body"), PROBES)
def test_the_probes_that_once_got_a_500_or_a_made_up_answer_get_a_4xx(
    server_url: str, route: str, body: dict[str, Any]
) -> None:
    response = httpx.post(f"{server_url}/v1/models/{route}", json=body, timeout=60)
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["error"]


def test_v2_fp64_beyond_float32_is_a_400(server_url: str) -> None:
    tensor = {"name": "input", "shape": [1, 64], "datatype": "FP64", "data": [1e308] * 64}
    response = httpx.post(
        f"{server_url}/v2/models/digits-mlp/infer", json={"inputs": [tensor]}, timeout=60
    )
    assert response.status_code == 400 and "beyond the model's range" in response.json()["error"]
