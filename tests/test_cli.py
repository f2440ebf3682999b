from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from app.cli import build_parser
from tests.support import BUNDLED_MODELS, REPO_ROOT, free_port, wait_ready


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
    port = free_port()
    command = [sys.executable, "-m", "app.cli", "serve", "--port", str(port)]
    command += ["--models-dir", str(BUNDLED_MODELS)]
    server = subprocess.Popen(
        command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, server)
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
