"""``mcdrop models``: the table of served models."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from app.cli import main
from tests.support import BUNDLED_MODEL_NAMES, free_port, serve_in_thread


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    with serve_in_thread() as url:
        yield url


def test_table_of_models(server_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "--url", server_url]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "model", "version", "task", "input", "N", "default/max", "dropout", "prefix", "status",
    ]  # fmt: skip
    assert set(lines[1]) == {"-", " "}
    rows = {line.split()[0]: line.split() for line in lines[2:]}
    assert set(rows) == BUNDLED_MODEL_NAMES
    assert rows["digits-cnn"][1:5] == ["1", "classification", "1x8x8", "100/2000"]
    assert rows["digits-mlp"][5:7] == ["2", "layers"] and rows["digits-mlp"][-1] == "ready"


def test_broken_model_shows_why(
    model_factory: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    folder = model_factory("good")
    model_factory("broken", kwargs={"p": 0.0})
    with serve_in_thread(folder.parent) as url:
        assert main(["models", "--url", url]) == 0
    broken = next(
        line for line in capsys.readouterr().out.splitlines() if line.startswith("broken")
    )
    assert "FAILED:" in broken and "p = 0" in broken


def test_unreachable_server_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "--url", f"http://127.0.0.1:{free_port()}"]) == 1
    assert "cannot reach mcdrop" in capsys.readouterr().err
