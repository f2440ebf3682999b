"""Graceful shutdown of a real `mcdrop serve` process with requests in flight."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.support import BUNDLED_MODELS, REPO_ROOT, free_port, wait_ready


def _status(url: str, body: dict[str, object] | None = None, timeout: float = 60) -> int:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


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
            time.sleep(0.2)
            assert _status(f"{base}/v2/health/ready", timeout=5) == 503
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
