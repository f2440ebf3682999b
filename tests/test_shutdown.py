"""Graceful shutdown of a real `mcdrop serve` process with requests in flight."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from app.config import load_settings
from app.dataplane.plane import SHUTDOWN_JOIN_S
from app.dataplane.process import STOP_JOIN_S
from app.server import server_config
from tests.support import BUNDLED_MODELS, REPO_ROOT, free_port, metric_value, wait_ready


def _status(url: str, body: dict[str, object] | None = None, timeout: float = 60) -> int:
    return _answer(url, body, timeout)[0]


def _answer(
    url: str, body: dict[str, object] | None = None, timeout: float = 60
) -> tuple[int, dict[str, Any]]:
    """Status and JSON body of a request (the error envelope for an error)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as error:
        return int(error.code), json.loads(error.read())


def _start(tmp_path: Path, **settings: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "MCDROP_LOG_FORMAT": "text"}
    env |= {f"MCDROP_{key.upper()}": value for key, value in settings.items()}
    command = [sys.executable, "-m", "app.cli", "serve", "--port", str(port)]
    server = subprocess.Popen(
        [*command, "--models-dir", str(BUNDLED_MODELS)],
        cwd=REPO_ROOT,
        env=env,
        stdout=(tmp_path / "server.log").open("w"),
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    wait_ready(base, server)
    return server, base


# 10,000 rows x 1,000 passes: at max_evaluation_values, and far longer than the deadlines
# below (its passes are sampled 16 at a time, so it can stop between two blocks).
LONG_EVALUATION = {
    "inputs": [[0.01 * (i % 7)] * 10 for i in range(10_000)],
    "targets": [float(i % 5) for i in range(10_000)],
    "n_samples": 1000,
    "seed": 3,
}


def test_sigterm_turns_ready_false_first_and_lets_in_flight_requests_finish(
    tmp_path: Path,
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "MCDROP_SHUTDOWN_DELAY_S": "1.5", "MCDROP_LOG_FORMAT": "text"}
    command = [sys.executable, "-m", "app.cli", "serve", "--port", str(port)]
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen(
        [*command, "--models-dir", str(BUNDLED_MODELS)],
        cwd=REPO_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_ready(base)
        heavy = {"inputs": [[8] * 64] * 100, "n_samples": 2000, "seed": 1}
        url = f"{base}/v1/models/digits-mlp/predict"
        with ThreadPoolExecutor(max_workers=4) as pool:
            in_flight = [pool.submit(_status, url, heavy) for _ in range(4)]
            time.sleep(0.3)
            server.send_signal(signal.SIGTERM)
            assert _not_ready_within(base, 1.5)  # shutdown_delay_s: not ready before draining
            assert _status(f"{base}/v2/health/live", timeout=5) == 200
            assert [f.result() for f in in_flight] == [200, 200, 200, 200]
        # uvicorn re-raises the captured SIGTERM once its graceful shutdown is complete
        assert server.wait(timeout=60) in (0, -signal.SIGTERM)
        text = (tmp_path / "server.log").read_text()
        assert "not ready; draining in 1.5s" in text
        assert "Application shutdown complete" in text
    finally:
        log.close()
        if server.poll() is None:
            server.kill()
            server.wait()


def _exit_bound(delay: float, timeout: float) -> float:
    """The bound docs/settings.md states on exiting after SIGTERM, shutdown_delay_s +
    request_timeout_s + 5 s, checked against what the server implements: the delay, uvicorn's
    graceful shutdown (ceil(request_timeout_s) + 2), the inference thread's join (or, with
    inference_process, the inference process's stop, which is shorter), and at least 1.5 s
    left for the process to exit on a loaded machine."""
    assert STOP_JOIN_S <= SHUTDOWN_JOIN_S
    documented = delay + timeout + 5.0
    config = server_config("app.main:create_app", load_settings(request_timeout_s=timeout))
    implemented = delay + float(config.timeout_graceful_shutdown or 0) + SHUTDOWN_JOIN_S
    assert implemented + 1.5 <= documented
    return documented


def _not_ready_within(base: str, seconds: float) -> bool:
    """Polls readiness until it answers 503, for at most ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if _status(f"{base}/v2/health/ready", timeout=5) == 503:
            return True
        time.sleep(0.05)
    return False


def test_sigterm_during_long_evaluations_ends_in_time_with_every_client_answered(
    tmp_path: Path,
) -> None:
    delay, timeout = 0.5, 3.0
    server, base = _start(tmp_path, shutdown_delay_s=str(delay), request_timeout_s=str(timeout))
    try:
        evaluate = f"{base}/v1/models/diabetes-mlp/evaluate"
        predict = f"{base}/v1/models/digits-mlp/predict"
        with ThreadPoolExecutor(max_workers=6) as pool:
            work = [pool.submit(_answer, evaluate, LONG_EVALUATION) for _ in range(2)]
            work += [pool.submit(_answer, predict, {"inputs": [[1] * 64]}) for _ in range(4)]
            time.sleep(1.0)
            server.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            answers = [future.result(timeout=30) for future in work]
        bound = _exit_bound(delay, timeout)
        server.wait(timeout=bound)
        assert time.monotonic() - signalled <= bound
        for status, body in answers:
            assert status in (200, 503, 504), (status, body)
            assert status == 200 or body["error"]
        assert {status for status, _ in answers[:2]} <= {503, 504}
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def test_a_batchbald_selection_stops_at_its_deadline_and_at_sigterm(tmp_path: Path) -> None:
    """A selection of about a minute (k = 100 among 1,000 candidates, at the work limit) stops
    between picks: at its deadline (504), after which another model is served at once, and at
    SIGTERM, after which the server exits within its bound and logs no unretrieved error."""
    timeout = 3.0
    server, base = _start(tmp_path, request_timeout_s=str(timeout))
    rank = f"{base}/v1/models/digits-mlp/rank"
    rows = [[float((i * k) % 17) for k in range(64)] for i in range(1000)]
    body = {"inputs": rows, "k": 100, "strategy": "batchbald", "candidates": 1000,
            "n_samples": 100, "seed": 2}  # fmt: skip
    image = {"inputs": [[[[0.0] * 8] * 8]], "n_samples": 10}
    try:
        assert _status(rank, body) == 504
        # Had the selection gone on after its 504, this would wait behind it (and get 504).
        assert _status(f"{base}/v1/models/digits-cnn/predict", image) == 200
        with ThreadPoolExecutor(max_workers=1) as pool:
            ranking = pool.submit(_answer, rank, body)
            _wait_for_metric(base, "mcdrop_inflight_requests", {"model": "digits-mlp"}, 1)
            time.sleep(1.0)
            server.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            status, answer = ranking.result(timeout=30)
        bound = _exit_bound(0.0, timeout)
        server.wait(timeout=bound)
        assert time.monotonic() - signalled <= bound
        assert status in (503, 504), answer
        log = (tmp_path / "server.log").read_text()
        assert "never retrieved" not in log and "Traceback" not in log, log
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def test_a_disconnected_evaluation_stops_and_frees_the_model_for_predictions(
    tmp_path: Path,
) -> None:
    server, base = _start(tmp_path)
    try:
        body = json.dumps(LONG_EVALUATION).encode()
        port = int(base.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as client:
            head = (
                "POST /v1/models/diabetes-mlp/evaluate HTTP/1.1\r\nHost: x\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            )
            client.sendall(head.encode() + body)
            _wait_for_metric(base, "mcdrop_inflight_requests", {"model": "diabetes-mlp"}, 1)
            time.sleep(0.5)  # sampling has started
        # Answered within its own deadline, between two of the evaluation's steps; and the
        # evaluation is counted cancelled well before its 1,000 passes (about 25 s here) could
        # end: had it run on, it would be counted only then, and as answered, not cancelled.
        status, _ = _answer(f"{base}/v1/models/diabetes-mlp/predict", {"inputs": [[0.0] * 10]})
        assert status == 200
        labels = {"model": "diabetes-mlp", "endpoint": "v1_evaluate", "outcome": "cancelled"}
        _wait_for_metric(base, "mcdrop_requests_total", labels, 1)
    finally:
        server.terminate()
        server.wait(timeout=30)


def _wait_for_metric(base: str, name: str, labels: dict[str, str], value: float) -> None:
    deadline = time.monotonic() + 20
    while metric_value(_metrics(base), name, labels) != value:
        assert time.monotonic() < deadline, _metrics(base)
        time.sleep(0.05)


def _metrics(base: str) -> str:
    with urllib.request.urlopen(f"{base}/metrics", timeout=5) as response:
        text: str = response.read().decode()
        return text
