from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from app.cli import build_parser, main
from app.commands.tabular import write_csv
from tests.support import BUNDLED_MODELS, REPO_ROOT, free_port, serve_in_thread, wait_ready


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


def test_help_states_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--help"], ["models", "--help"], ["evaluate", "--help"]):
        with pytest.raises(SystemExit) as exited:
            main(argv)
        assert exited.value.code == 0
        assert "exit status: 0 ok, 1 a problem found" in " ".join(capsys.readouterr().out.split())


def test_usage_errors_exit_2() -> None:
    with pytest.raises(SystemExit) as exited:
        main(["models", "--no-such-flag"])
    assert exited.value.code == 2


def test_models_lists_without_importing_torch() -> None:
    """The probe a slow ``mcdrop models`` would fail: only the running command's module is
    imported, and listing models needs neither torch nor the engine."""
    with serve_in_thread() as url:
        code = (
            "import sys; from app.cli import main; status = main(['models', '--url', sys.argv[1]]);"
            "print(status, sorted(m for m in sys.modules if m.split('.')[0] == 'torch'"
            " or m.startswith('app.engine')))"
        )
        result = subprocess.run(
            [sys.executable, "-c", code, url], capture_output=True, text=True, check=True
        )
    assert "digits-mlp" in result.stdout
    assert result.stdout.splitlines()[-1] == "0 []"


def test_a_closed_pipe_is_not_a_traceback(tmp_path: Path) -> None:
    """``mcdrop evaluate ... --json | head -1``: here the reader leaves before the command
    prints anything, so its first write meets the closed pipe."""
    data = tmp_path / "digits.csv"
    rows = [[float((i * 7 + j) % 17) for j in range(64)] + [i % 10] for i in range(5)]
    write_csv(data, [f"pixel{j}" for j in range(64)] + ["digit"], rows)
    command = [sys.executable, "-m", "app.cli", "evaluate", "digits-mlp", "--data", str(data)]
    command += ["--target", "digit", "--n-samples", "5", "--json"]
    command += ["--models-dir", str(BUNDLED_MODELS)]
    process = subprocess.Popen(
        command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()
    errors = process.stderr.read().decode()
    assert process.wait(timeout=120) == 0, errors
    assert "Traceback" not in errors and "BrokenPipe" not in errors, errors
