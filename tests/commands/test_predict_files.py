"""``mcdrop predict MODEL FILE...`` for every input kind that takes files: audio clips and
DICOM/NIfTI scans, against a server and locally, equal to the API's own answer for the seed."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from app.cli import main
from tests.support import BUNDLED_MODELS, REPO_ROOT, serve_in_thread

AUDIO = REPO_ROOT / "docs" / "audio"
SCANS = BUNDLED_MODELS / "lesion-seg" / "samples"
OPTIONS = ["--n-samples", "12", "--seed", "5"]


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    for name in ("spoken-digits", "lesion-seg"):
        shutil.copytree(BUNDLED_MODELS / name, root / name)
    return root


@pytest.fixture(scope="module")
def server_url(models_dir: Path) -> Iterator[str]:
    with serve_in_thread(models_dir) as url:
        yield url


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> Any:
    code = main(["predict", *args, *OPTIONS, "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)


def _api(url: str, model: str, field: str, paths: list[Path]) -> Any:
    files = [(field, (path.name, path.read_bytes())) for path in paths]
    form = {"n_samples": "12", "seed": "5"}
    answer = httpx.post(f"{url}/v1/models/{model}/predict", files=files, data=form, timeout=60)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_audio_files_remote_and_local_equal_the_api(
    server_url: str, models_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clips = [AUDIO / "seven.wav", AUDIO / "noise.wav"]
    args = ["spoken-digits", *map(str, clips)]
    remote = _cli(capsys, *args, "--url", server_url)
    local = _cli(capsys, *args, "--local", "--models-dir", str(models_dir))
    api = _api(server_url, "spoken-digits", "audio", clips)
    assert remote["predictions"] == api["predictions"]
    assert remote["predictions"][0]["label"] == "seven"
    # In-process: the same masks and clips, equal up to float rounding of the batched GRU.
    for mine, theirs in zip(local["predictions"], api["predictions"], strict=True):
        assert np.allclose(mine["mean"], theirs["mean"], rtol=1e-5, atol=1e-7)


def test_a_folder_of_clips_is_sorted_and_named_in_the_table(
    server_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("three.wav", "seven.wav"):
        shutil.copy(AUDIO / name, tmp_path / name)
    (tmp_path / "notes.txt").write_text("not a clip: skipped")
    code = main(["predict", "spoken-digits", str(tmp_path), *OPTIONS, "--url", server_url])
    lines = capsys.readouterr().out.splitlines()
    assert code == 0
    assert [line.split()[:2] for line in lines[4:6]] == [["seven.wav", "7"], ["three.wav", "3"]]


def test_dicom_and_nifti_scans_remote_and_local_equal_the_api(
    server_url: str, models_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nifti = _nifti_of(SCANS / "easy.png", tmp_path / "easy.nii")
    scans = [SCANS / "easy.dcm", nifti]
    args = ["lesion-seg", *map(str, scans)]
    remote = _cli(capsys, *args, "--url", server_url)
    local = _cli(capsys, *args, "--local", "--models-dir", str(models_dir))
    api = _api(server_url, "lesion-seg", "image", scans)
    assert remote["predictions"] == api["predictions"]
    for mine, theirs in zip(local["predictions"], api["predictions"], strict=True):
        assert mine["areas"][1]["pixels"] == theirs["areas"][1]["pixels"]
        assert mine["mean_mutual_information"] == pytest.approx(
            theirs["mean_mutual_information"], rel=1e-5
        )
    assert remote["predictions"][0]["areas"][1]["pixels"] > 0  # the easy scan's lesion


def test_files_of_another_kind_are_a_usage_error(
    server_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    png = str(SCANS / "easy.png")
    code = main(["predict", "spoken-digits", png, str(AUDIO / "seven.wav"), "--url", server_url])
    assert code == 2
    assert "easy.png: not a WAV, FLAC or OGG file nor a folder" in capsys.readouterr().err
    assert main(["predict", "spoken-digits", png, "--input", png, "--url", server_url]) == 2
    assert "one of the two" in capsys.readouterr().err


def _nifti_of(png: Path, target: Path) -> Path:
    """The PNG's grey plane as a 2D NIfTI-1 file (values 0..255)."""
    from PIL import Image

    from app.engine.nifti import encode_nifti

    target.write_bytes(encode_nifti(np.asarray(Image.open(png).convert("L"))))
    return target


def test_the_metadata_names_each_kinds_files(server_url: str) -> None:
    from app.inputs.base import FileInput

    audio = httpx.get(f"{server_url}/v1/models/spoken-digits").json()["input"]["files"]
    assert audio == {
        "field": "audio",
        "suffixes": [".wav", ".flac", ".ogg"],
        "described": "WAV, FLAC or OGG",
    }
    scans = httpx.get(f"{server_url}/v1/models/lesion-seg").json()["input"]["files"]
    assert scans["field"] == "image" and scans["described"] == "PNG, DICOM or NIfTI"
    takes = FileInput(scans["field"], tuple(scans["suffixes"]), scans["described"])
    assert [takes.takes(n) for n in ("A.NII.GZ", "b.dcm", "c.png", "d.jpg")] == [1, 1, 1, 0]
