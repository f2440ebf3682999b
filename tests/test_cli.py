from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from app.cli import build_parser
from tests.support import BUNDLED_MODELS, REPO_ROOT


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_serve_flags_parse() -> None:
    args = build_parser().parse_args(
        ["serve", "--host", "0.0.0.0", "--port", "9000", "--models-dir", "m", "--config", "c.yaml"]
    )
    assert (args.host, args.port, args.models_dir, args.config) == (
        "0.0.0.0",
        9000,
        Path("m"),
        Path("c.yaml"),
    )


def test_missing_config_file_exits_with_2(capsys: pytest.CaptureFixture[str]) -> None:
    args = build_parser().parse_args(["serve", "--config", "/nonexistent/settings.yaml"])
    assert args.handler(args) == 2
    assert "config file not found" in capsys.readouterr().err


def test_mcdrop_serve_answers_over_real_http() -> None:
    port = _free_port()
    command = [sys.executable, "-m", "app.cli", "serve", "--port", str(port)]
    command += ["--models-dir", str(BUNDLED_MODELS)]
    server = subprocess.Popen(
        command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/v2/health/ready", timeout=1) as response:
                    assert response.status == 200
                    break
            except (urllib.error.URLError, ConnectionError):
                assert server.poll() is None, server.stdout.read() if server.stdout else ""
                assert time.monotonic() < deadline, "server did not become ready"
                time.sleep(0.2)
        body = json.dumps({"inputs": [[0.0] * 10], "n_samples": 10, "seed": 0}).encode()
        request = urllib.request.Request(
            f"{base}/v1/models/diabetes-mlp/predict",
            data=body,
            headers={"content-type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            answer = json.load(response)
        assert answer["n_samples"] == 10 and len(answer["predictions"]) == 1
    finally:
        server.terminate()
        server.wait(timeout=20)
