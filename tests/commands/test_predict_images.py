"""``mcdrop predict MODEL --input photo.png`` (or a folder), against a server and locally;
``mcdrop check-model`` shows an image model's preprocessing and its split."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.cli import main
from tests.support import BUNDLED_MODELS, REPO_ROOT, serve_in_thread

MODEL = "digits-image"
PICTURES = REPO_ROOT / "docs" / "images"


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    shutil.copytree(BUNDLED_MODELS / MODEL, root / MODEL)
    return root


@pytest.fixture(scope="module")
def server_url(models_dir: Path) -> Iterator[str]:
    with serve_in_thread(models_dir) as url:
        yield url


def _json(capsys: pytest.CaptureFixture[str], *args: str) -> Any:
    code = main(["predict", MODEL, *args, "--n-samples", "20", "--seed", "4", "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)


def test_a_folder_of_images_remote_and_local_give_the_same_numbers(
    server_url: str, models_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("digit-0.png", "digit-3.png", "digit-7.png"):
        shutil.copy(PICTURES / name, folder / name)
    (folder / "notes.txt").write_text("not an image: skipped")
    batches = ["--batch-size", "2"]
    remote = _json(capsys, "--input", str(folder), "--url", server_url, *batches)
    local = _json(
        capsys, "--input", str(folder), "--local", "--models-dir", str(models_dir), *batches
    )
    assert [row["label"] for row in remote["predictions"]] == ["0", "3", "7"]
    assert remote["predictions"] == local["predictions"]
    # Alone, the image's backbone runs on a batch of one: equal up to float rounding, which
    # moves a float32 probability by up to ~1e-5 relative (CPU-dependent): a 10x margin.
    one = _json(capsys, "--input", str(folder / "digit-3.png"), "--url", server_url)
    assert one["predictions"][0]["mean"] == pytest.approx(
        remote["predictions"][1]["mean"], rel=1e-4, abs=1e-12
    )


def test_the_table_names_each_file(server_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["predict", MODEL, "--input", str(PICTURES / "digit-7.png"), "--url", server_url])
    out = capsys.readouterr().out
    assert code == 0
    assert out.splitlines()[4].split()[:2] == ["digit-7.png", "7"]


def test_bad_image_files_exit_1_an_empty_folder_2(
    server_url: str, models_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\nnope")
    for where in (["--url", server_url], ["--local", "--models-dir", str(models_dir)]):
        code = main(["predict", MODEL, "--input", str(broken), *where])
        assert code == 1
        assert "inputs[0]: is not a PNG, JPEG, WEBP image" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["predict", MODEL, "--input", str(empty), "--local"]) == 2
    assert "no PNG, JPEG or WebP files" in capsys.readouterr().err


def test_check_model_reports_preprocessing_and_split(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["check-model", str(BUNDLED_MODELS / MODEL), "--runs", "2", "--n-samples", "5"])
    out = capsys.readouterr().out
    assert code == 0, out
    # The input kind describes the preprocessing on the input line.
    described = "input      grey image (PNG, JPEG, WebP) -> [1, 32, 32]: grey, shorter side -> 32, "
    assert described + "centre crop 32x32, /255, mean [" in out
    assert "torch.fx split:" in out and "(from the first dropout: head.3)" in out
