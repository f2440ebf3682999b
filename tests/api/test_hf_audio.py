"""A WAV posted to a Hugging Face audio folder (Wav2Vec2 on its normalised waveform, AST on its
filterbank) is served end to end: v1 base64, multipart ``audio`` files and v2 BYTES give the
numbers of the folder's feature extractor run on the decoded clip; without transformers the
folder fails to load naming the audio extra and the other models serve."""

from __future__ import annotations

import base64
import io
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import yaml
from fastapi.testclient import TestClient

from app.config import load_settings
from app.engine.audio import encode_wav
from app.engine.predictor import PredictionRequest
from app.main import create_app
from app.registry.loading import load_model_folder
from app.registry.repository import ModelRepository
from app.registry.served import LoadOptions
from tests.hf_audio import (
    SAMPLE_RATE,
    feature_extractor,
    save_audio_model,
    tones,
    write_audio_model,
)
from tests.support import write_model

pytest.importorskip("transformers")

OPTIONS = {"n_samples": 24, "seed": 7}


def _wavs() -> list[bytes]:
    return [encode_wav(wave, SAMPLE_RATE) for wave in tones(2, seconds=0.4)]


def _means(answer: object) -> list[float]:
    return [p for row in answer["predictions"] for p in row["mean"]]  # type: ignore[index]


@pytest.mark.parametrize("kind", ["wav2vec2", "ast"])
def test_a_wav_is_served_through_the_folders_feature_extractor(tmp_path: Path, kind: str) -> None:
    folder = (
        write_audio_model(tmp_path / "models", kind, kind, layerdrop=0.1)
        if kind != "ast"
        else (write_audio_model(tmp_path / "models", kind, kind))
    )
    wavs = _wavs()
    model = load_model_folder(folder)
    described = model.input_kind.describe()
    assert described.kind == "audio" and described.extra["features"] == "extractor"
    # what the folder's own extractor makes of the decoded clip, sampled by the engine
    decoded = [soundfile.read(io.BytesIO(w), dtype="float32")[0] for w in wavs]
    extractor = feature_extractor(kind)
    values = [extractor(d, sampling_rate=SAMPLE_RATE)["input_values"][0] for d in decoded]
    x = model.input_kind.rows([{"b64": base64.b64encode(w).decode()} for w in wavs], 4)
    assert np.allclose(x[0, : len(values[0])].numpy(), values[0], atol=1e-6)
    direct = model.predictor.predict(PredictionRequest(x, 24, 0.95, seed=7))
    app = create_app(load_settings(models_dir=tmp_path / "models"))
    url = f"/v1/models/{kind}/predict"
    with TestClient(app) as client:
        as_b64 = client.post(
            url, json={"inputs": [{"b64": base64.b64encode(w).decode()} for w in wavs], **OPTIONS}
        )
        assert as_b64.status_code == 200, as_b64.text
        files = [("audio", (f"{i}.wav", w, "audio/wav")) for i, w in enumerate(wavs)]
        form = {key: str(value) for key, value in OPTIONS.items()}
        as_form = client.post(url, files=files, data=form)
        tensor = {
            "name": "input",
            "datatype": "BYTES",
            "shape": [2],
            "data": [base64.b64encode(w).decode() for w in wavs],
        }
        v2 = client.post(
            f"/v2/models/{kind}/infer", json={"inputs": [tensor], "parameters": OPTIONS}
        )
        info = client.get(f"/v1/models/{kind}").json()
    assert as_form.status_code == 200 and v2.status_code == 200, (as_form.text, v2.text)
    served = _means(as_b64.json())
    assert _means(as_form.json()) == served
    v2_means = {o["name"]: o["data"] for o in v2.json()["outputs"]}["mean"]
    assert np.allclose(v2_means, served, atol=1e-6)
    expected = direct.stats.mean.flatten().tolist()
    assert np.allclose(served, expected, atol=1e-5)
    assert info["input"]["kind"] == "audio" and info["labels"] == ["yes", "no", "noise"]
    sampled = [s for s in info["dropout"] if s["sampled"]]
    assert any(s["site"] == "attention" for s in sampled)


def test_without_transformers_the_folder_names_the_audio_extra_and_others_serve(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_audio_model(tmp_path, "speech", "wav2vec2")
    write_model(tmp_path, "tiny")
    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers -> ImportError
    repository = ModelRepository(tmp_path, LoadOptions())
    repository.load_all()
    failed = repository.entry("speech")
    assert not failed.ready and failed.error is not None
    assert 'needs transformers: pip install "mcdrop[audio]"' in failed.error
    assert repository.entry("tiny").ready


def test_a_card_asking_for_log_mel_on_a_folder_is_refused(tmp_path: Path) -> None:
    from app.errors import ModelLoadError

    log_mel = {"log_mel": {"n_mels": 16, "win_ms": 25, "hop_ms": 10}}
    card = {
        "input": {
            "type": "audio",
            "sample_rate": SAMPLE_RATE,
            "max_seconds": 2,
            "features": log_mel,
        }
    }
    folder = write_audio_model(tmp_path, "w", "wav2vec2", card=card)
    with pytest.raises(ModelLoadError, match="its own feature extractor"):
        load_model_folder(folder)


def test_forward_calls_fold_a_bounded_number_of_encoder_frames(tmp_path: Path) -> None:
    # 2 s clips (32 001 samples): 100 conv frames, so 4096 // 100 = 40 folded rows per call
    model = load_model_folder(write_audio_model(tmp_path, "w", "wav2vec2"))
    assert model.input_kind.chunk_rows(4096) == 40
    assert model.predictor.sampler.max_rows == 40


def test_a_masked_folder_takes_each_clips_length(tmp_path: Path) -> None:
    folder = save_audio_model(tmp_path / "models" / "large", "wav2vec2", masks=True)
    card = {
        "name": "large",
        "task": "classification",
        "input": {"type": "audio", "sample_rate": SAMPLE_RATE, "max_seconds": 2},
        "architecture": {"huggingface": "."},
    }
    (folder / "model.yaml").write_text(yaml.safe_dump(card))
    model = load_model_folder(folder)
    assert model.input_kind.describe().lengths
    short, long = (
        encode_wav(tones(1, s, seed=i)[0], SAMPLE_RATE) for i, s in enumerate((0.3, 0.8))
    )
    x = model.input_kind.rows([short, long], 2)
    assert x[:, 0].tolist() == [0.3 * SAMPLE_RATE, 0.8 * SAMPLE_RATE]
    app = create_app(load_settings(models_dir=tmp_path / "models"))
    with TestClient(app) as client:
        files = [("audio", ("s.wav", short, "audio/wav")), ("audio", ("l.wav", long, "audio/wav"))]
        answer = client.post("/v1/models/large/predict", files=files, data={"seed": "1"})
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["predictions"]) == 2
