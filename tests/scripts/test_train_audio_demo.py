"""The audio demo: its training features are the server's own, its augmentation is seeded, and
the shipped ``spoken-digits`` model answers the shipped samples as the README says (no
espeak-ng needed: only retraining runs it)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from app.architectures import build_bundled
from app.engine.audio import encode_wav
from app.engine.predictor import PredictionRequest
from app.engine.stats import ClassificationStats
from app.registry.loading import load_model_folder
from tests.moments import assert_moments_match, probabilities
from tests.support import BUNDLED_MODELS, REPO_ROOT, load_script

demo = load_script("train_audio_demo")
SAMPLES = REPO_ROOT / "docs" / "audio"
FOLDER = BUNDLED_MODELS / "spoken-digits"


def test_training_frames_are_what_the_server_computes() -> None:
    model = load_model_folder(FOLDER)
    t = np.arange(8000) / 22_050
    clip = encode_wav((0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 22_050)
    rows, labels = demo.frames_of([(clip, 3)], copies=0, seed=0)
    served = model.rows_to_tensor([clip], max_rows=1)
    length = int(served[0, 0])
    assert labels.tolist() == [3] and rows[0].shape == (length, 40)
    frames = served[0, 1:].reshape(-1, 40)[:length]
    assert torch.equal(frames, rows[0].double())


def test_augmentation_is_seeded_and_bounded() -> None:
    wave = np.sin(np.arange(16_000) / 10).astype(np.float32)
    first = demo.augment(wave, np.random.default_rng(5), 20_000)
    assert np.array_equal(first, demo.augment(wave, np.random.default_rng(5), 20_000))
    assert not np.array_equal(first, demo.augment(wave, np.random.default_rng(6), 20_000))
    assert first.shape[0] <= 20_000 and np.abs(first).max() <= 1


def test_the_shipped_model_is_small_and_its_card_says_how_it_was_made() -> None:
    model = load_model_folder(FOLDER)
    assert (FOLDER / "model.safetensors").stat().st_size < 2_000_000
    assert model.card.training["script"] == "scripts/train_audio_demo.py"
    assert model.card.training["held_out_accuracy"] > 0.9
    sampled = {site.name for site in model.dropout_sites if site.sampled}
    assert sampled == {"drop_frames", "rnn.dropout.0", "drop"}
    assert model.card.dropout_share == {"drop_frames": [1]}


@pytest.mark.parametrize(
    ("file", "label", "high_mi"),
    [
        ("seven.wav", "seven", False),
        ("three.wav", "three", False),
        ("hello.wav", None, True),
        ("noise.wav", None, True),
    ],
)
def test_the_samples_answer_as_the_readme_says(file: str, label: str | None, high_mi: bool) -> None:
    model = load_model_folder(FOLDER)
    inputs = model.rows_to_tensor([(SAMPLES / file).read_bytes()], max_rows=1)
    stats = model.predictor.predict(PredictionRequest(inputs, 200, 0.9, seed=0)).stats
    assert isinstance(stats, ClassificationStats)
    mi = float(stats.mutual_information[0])
    if high_mi:
        assert mi > 0.2 and float(stats.confidence[0]) < 0.7
    else:
        assert model.card.labels is not None
        assert model.card.labels[int(stats.predicted_class[0])] == label
        assert mi < 0.02 and float(stats.confidence[0]) > 0.95


def test_the_served_passes_are_the_models_own_mc_dropout_with_training_locked_mask() -> None:
    """mcdrop's passes (frames mask shared over time by the card) equal the model in training
    mode with the training script's LockedDropout, on a digit and on noise."""
    served_model = load_model_folder(FOLDER)
    clips = [(SAMPLES / name).read_bytes() for name in ("three.wav", "noise.wav")]
    inputs = served_model.rows_to_tensor(clips, max_rows=2)
    served = probabilities(served_model.predictor.sampler.sample(inputs, 1000, seed=0))
    network = build_bundled("keyword_gru", served_model.card.architecture.kwargs)
    network.load_state_dict(load_file(str(FOLDER / "model.safetensors")))
    network.drop_frames = demo.LockedDropout(0.1)
    lengths = inputs[:, 0].long()
    x = inputs[:, 1:].reshape(2, -1, 40).float()
    torch.manual_seed(0)
    network.train()
    with torch.no_grad():
        passes = [
            network(x.repeat(250, 1, 1), lengths.repeat(250)).view(250, 2, -1) for _ in range(4)
        ]
    assert_moments_match(served, probabilities(torch.cat(passes)))
