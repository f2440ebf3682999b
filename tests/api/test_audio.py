"""Audio in over real HTTP (a uvicorn server on a loopback port serving a folder of a tiny GRU
over log-mel frames): v1 base64 JSON, multipart ``audio`` files, v2 BYTES as JSON and as binary
data give the same numbers; bad clips are 4xx naming the input; the metadata says audio; without
soundfile the model names the extra while the rest serves; a bad audio card names its field."""

from __future__ import annotations

import base64
import json
import struct
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.errors import ModelLoadError
from app.registry.loading import load_model_folder
from tests.inputs.audio_models import INPUT, clips, write_audio_model
from tests.support import serve_in_thread, write_model

OPTIONS = {"n_samples": 40, "seed": 5}
PREDICT = "/v1/models/gru/predict"
INFER = "/v2/models/gru/infer"


@pytest.fixture(scope="module")
def http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    models: Path = tmp_path_factory.mktemp("audio-models")
    write_audio_model(models, "FramesGRU", name="gru")
    with serve_in_thread(models) as base_url, httpx.Client(base_url=base_url, timeout=60) as c:
        yield c


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _v1_means(answer: httpx.Response) -> list[np.float32]:
    assert answer.status_code == 200, answer.text
    return [np.float32(p) for row in answer.json()["predictions"] for p in row["mean"]]


def _v2_means(answer: httpx.Response) -> list[np.float32]:
    assert answer.status_code == 200, answer.text
    outputs = {o["name"]: o["data"] for o in answer.json()["outputs"]}
    return [np.float32(p) for p in outputs["mean"]]


def test_every_route_and_encoding_gives_the_same_numbers(http: httpx.Client) -> None:
    encoded = clips()[:3]
    as_json = _v1_means(
        http.post(PREDICT, json={"inputs": [{"b64": _b64(c)} for c in encoded], **OPTIONS})
    )
    files = [("audio", (f"{i}.wav", c, "audio/wav")) for i, c in enumerate(encoded)]
    form = {key: str(value) for key, value in OPTIONS.items()}
    assert _v1_means(http.post(PREDICT, files=files, data=form)) == as_json
    tensor = {
        "name": "input",
        "datatype": "BYTES",
        "shape": [3],
        "data": [_b64(c) for c in encoded],
    }
    v2 = http.post(INFER, json={"inputs": [tensor], "parameters": OPTIONS})
    assert _v2_means(v2) == as_json
    raw = b"".join(struct.pack("<I", len(c)) + c for c in encoded)
    header = {
        "inputs": [{**tensor, "data": None, "parameters": {"binary_data_size": len(raw)}}],
        "parameters": OPTIONS,
    }
    head = json.dumps(header).encode()
    binary = http.post(
        INFER,
        content=head + raw,
        headers={"Inference-Header-Content-Length": str(len(head))},
    )
    assert _v2_means(binary) == as_json


def test_bad_clips_are_4xx_naming_the_input(http: httpx.Client) -> None:
    good = _b64(clips()[0])
    corrupt = _b64(b"RIFF\x00\x00\x00\x00WAVEjunk" * 4)
    v1 = http.post(PREDICT, json={"inputs": [{"b64": good}, {"b64": corrupt}]})
    assert v1.status_code == 422 and v1.json()["error"].startswith("inputs[1]: is not a WAV")
    empty = http.post(PREDICT, files=[("audio", ("a.wav", b"", "audio/wav"))])
    assert empty.status_code == 422 and "inputs[0]: is empty" in empty.json()["error"]
    numbers = http.post(PREDICT, json={"inputs": [[0.1, 0.2]]})
    assert numbers.status_code == 422 and "this model takes audio files" in numbers.text
    tensor = {"name": "input", "datatype": "BYTES", "shape": [1], "data": [corrupt]}
    v2 = http.post(INFER, json={"inputs": [tensor]})
    assert v2.status_code == 400 and v2.json()["error"].startswith("inputs[0]: is not a WAV")


def test_the_metadata_says_audio(http: httpx.Client) -> None:
    info = http.get("/v1/models/gru").json()
    assert info["input"]["kind"] == "audio" and info["input"]["widget"] == "audio"
    assert info["input"]["shape"] == [-1, 8] and info["input"]["lengths"]
    assert info["input"]["parameters"]["sample_rate"] == 8000
    assert "8000 Hz" in info["input"]["summary"]
    v2 = http.get("/v2/models/gru").json()
    (first,) = v2["inputs"]
    assert first["datatype"] == "BYTES" and first["shape"] == [-1]
    assert first["parameters"]["content_type"] == "audio"
    assert first["parameters"]["features"] == "log_mel"


def test_without_soundfile_the_audio_model_names_the_extra_and_the_rest_serves(
    monkeypatch: pytest.MonkeyPatch, client_for: Callable[..., TestClient], tmp_path: Path
) -> None:
    write_audio_model(tmp_path, "FramesConv", name="conv")
    write_model(tmp_path, "tiny")
    monkeypatch.setitem(sys.modules, "soundfile", None)
    started = client_for(tmp_path)
    listed = {m["name"]: m for m in started.get("/v1/models").json()["models"]}
    assert listed["conv"]["ready"] is False
    assert listed["conv"]["error"] == (
        "model 'conv': audio models need soundfile and soxr: pip install \"mcdrop[audio]\""
    )
    assert started.post("/v1/models/tiny/predict", json={"inputs": [[0.0, 1.0]]}).is_success


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"sample_rate": 500}, "input.audio.sample_rate"),
        ({"max_seconds": 0}, "input.audio.max_seconds"),
        ({"features": {"mfcc": {"n": 13}}}, "input.audio.features"),
        ({"features": {"log_mel": {"n_mels": 0, "win_ms": 25, "hop_ms": 10}}}, "n_mels"),
    ],
)
def test_a_bad_audio_card_is_a_load_error_naming_the_field(
    tmp_path: Path, change: dict[str, object], problem: str
) -> None:
    folder = write_audio_model(tmp_path, "FramesGRU", input={**INPUT, **change})
    with pytest.raises(ModelLoadError, match=problem):
        load_model_folder(folder)


def _fp32(waves: np.ndarray) -> dict[str, object]:
    return {
        "name": "input",
        "datatype": "FP32",
        "shape": list(waves.shape),
        "data": waves.reshape(-1).tolist(),
    }


def test_v2_fp32_waveforms_equal_the_same_clips_as_wav(http: httpx.Client) -> None:
    from app.engine.audio import encode_wav
    from tests.inputs.audio_models import SAMPLE_RATE, tone

    waves = np.stack([tone(300, 0.4, seed=1), tone(900, 0.4, seed=2)])  # float32, [2, T]
    # FLOAT WAVs hold the float32 samples exactly: the two requests carry the same numbers.
    as_wav = [{"b64": _b64(encode_wav(wave, SAMPLE_RATE, subtype="FLOAT"))} for wave in waves]
    expected = _v1_means(http.post(PREDICT, json={"inputs": as_wav, **OPTIONS}))
    v2 = http.post(INFER, json={"inputs": [_fp32(waves)], "parameters": OPTIONS})
    assert _v2_means(v2) == expected
    raw = waves.astype("<f4").tobytes()
    tensor = {**_fp32(waves), "data": None, "parameters": {"binary_data_size": len(raw)}}
    head = json.dumps({"inputs": [tensor], "parameters": OPTIONS}).encode()
    binary = http.post(
        INFER, content=head + raw, headers={"Inference-Header-Content-Length": str(len(head))}
    )
    assert _v2_means(binary) == expected
    metadata = http.get("/v2/models/gru").json()["inputs"][0]["parameters"]
    assert metadata["also_accepts"] == "FP32 [-1, -1] mono samples at 8000 Hz, at most 8000 per row"


def test_bad_v2_waveforms_are_400_naming_the_input_before_reading_data(
    http: httpx.Client,
) -> None:
    # 1 s at 8000 Hz is the card's bound: one sample more is refused from the shape alone
    # (the data is not even there).
    long = {"name": "input", "datatype": "FP32", "shape": [1, 8001], "data": [0.0]}
    answer = http.post(INFER, json={"inputs": [long]})
    assert answer.status_code == 400
    assert "input 'input': shape [1, 8001]" in answer.json()["error"]
    assert "1 <= T <= 8000 (1 s)" in answer.json()["error"]
    flat = {"name": "input", "datatype": "FP32", "shape": [400], "data": [0.0] * 400}
    assert "shape [400]" in http.post(INFER, json={"inputs": [flat]}).json()["error"]
    doubles = {**_fp32(np.zeros((1, 400))), "datatype": "FP64"}
    answer = http.post(INFER, json={"inputs": [doubles]})
    assert answer.status_code == 400 and "send BYTES clips or FP32" in answer.json()["error"]
    waves = np.zeros((2, 400), dtype=np.float32)
    waves[1, 7] = np.nan
    answer = http.post(INFER, json={"inputs": [{**_fp32(waves), "data": None}]})
    assert answer.status_code == 400  # neither data nor binary
    raw = waves.astype("<f4").tobytes()
    tensor = {**_fp32(waves), "data": None, "parameters": {"binary_data_size": len(raw)}}
    head = json.dumps({"inputs": [tensor]}).encode()
    answer = http.post(
        INFER, content=head + raw, headers={"Inference-Header-Content-Length": str(len(head))}
    )
    assert answer.status_code == 400
    assert answer.json()["error"].startswith("inputs[1]: holds NaN or infinite samples")
