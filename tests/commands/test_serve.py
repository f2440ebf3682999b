"""``mcdrop serve --workers N``: several processes behind one port, metrics summed over them,
one inference process behind them."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.support import BUNDLED_MODELS, REPO_ROOT, free_port, wait_ready


def _post(url: str, body: dict[str, object]) -> None:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.status == 200


def _requests_total(base_url: str) -> float:
    with urllib.request.urlopen(f"{base_url}/metrics", timeout=10) as response:
        text = response.read().decode()
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "mcdrop_requests_total":
                total += sample.value
    return total


def _writer_pids(folder: Path) -> set[str]:
    return {m.group(1) for p in folder.glob("*.db") if (m := re.search(r"_(\d+)\.db$", p.name))}


def test_two_workers_share_one_metrics_view(tmp_path: Path) -> None:
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    (metrics_dir / "counter_1.db").write_bytes(b"stale file of an earlier run")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    env["MCDROP_METRICS_DIR"] = str(metrics_dir)
    command = [sys.executable, "-m", "app.cli", "serve", "--workers", "2", "--port", str(port)]
    command += ["--models-dir", str(BUNDLED_MODELS)]
    server = subprocess.Popen(
        command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base_url, server)
        # Both workers load the models at start-up (each writes its own files), whichever of
        # them answers the readiness probe first.
        deadline = time.monotonic() + 60
        while len(pids := _writer_pids(metrics_dir)) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(pids) == 2, sorted(metrics_dir.iterdir())
        assert not (metrics_dir / "counter_1.db").exists()
        body = {"inputs": [[0.0] * 10], "n_samples": 5, "seed": 0}
        for _ in range(6):
            _post(f"{base_url}/v1/models/diabetes-mlp/predict", body)
        # Every scrape, whichever worker answers it, sees all six requests.
        assert [_requests_total(base_url) for _ in range(6)] == [6.0] * 6
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_sigterm_drains_both_workers_then_stops_the_inference_process(tmp_path: Path) -> None:
    """Requests in flight through two HTTP workers are answered after SIGTERM, then the one
    inference process behind them exits with the server, within the SIGTERM bound."""
    models = tmp_path / "models"
    shutil.copytree(BUNDLED_MODELS / "digits-mlp", models / "digits-mlp")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "app.cli", "serve", "--workers", "2", "--port", str(port)]
    log = tmp_path / "server.log"
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    env |= {"MCDROP_LOG_FORMAT": "text", "MCDROP_METRICS_DIR": str(tmp_path / "metrics")}
    env["MCDROP_INFERENCE_PROCESS"] = "true"
    with log.open("w") as output:
        server = subprocess.Popen(
            [*command, "--models-dir", str(models)],
            cwd=REPO_ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_ready(base, server)
        found = re.search(r"inference process (\d+) ready", log.read_text())
        assert found is not None, log.read_text()
        inference = int(found.group(1))
        heavy = {"inputs": [[8] * 64] * 100, "n_samples": 2000, "seed": 1}
        url = f"{base}/v1/models/digits-mlp/predict"
        with ThreadPoolExecutor(max_workers=4) as pool:
            in_flight = [pool.submit(_post, url, heavy) for _ in range(4)]
            time.sleep(0.3)
            server.send_signal(signal.SIGTERM)
            for request in in_flight:
                request.result()  # 200, or _post raises
        assert server.wait(timeout=60) in (0, -signal.SIGTERM)
        assert not Path(f"/proc/{inference}").exists()
        assert "inference process stopped" in log.read_text()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
