"""Audio models over log-mel frames of variable length (2-layer GRU and LSTM with recurrent
dropout, Conv1d) and over the waveform (a strided Conv1d), time-locked dropout included: served
moments equal each model's own torch MC dropout (training mode, AWD-LSTM LockedDropout for the
time-locked site) within 5 Monte Carlo standard errors, and a seeded request gets the same bits
alone or fused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from app.engine.audio import decode_audio
from app.engine.log_mel import log_mel
from app.engine.sampling import SampleJob
from app.registry.loading import load_model_folder
from tests.inputs.audio_models import SAMPLE_RATE, SHARE, clips, reference_model, write_audio_model
from tests.moments import Z, assert_moments_match, differences, moments, probabilities

SERVED_PASSES = 2000
REFERENCE_PASSES = 4000
FAMILIES = ["FramesGRU", "FramesLSTM", "FramesConv", "WaveConv"]


def _frames(encoded: list[bytes], cls: str = "FramesGRU") -> tuple[Tensor, Tensor]:
    """(B, T, 8) float32 log-mel frames (WaveConv: (B, T) samples) zero-padded to the longest
    clip, and the lengths (B,), computed apart from the kind by the same decoder and log-mel
    function."""
    waves = [decode_audio(clip, SAMPLE_RATE, 1.0, "x") for clip in encoded]
    if cls == "WaveConv":
        rows = [torch.from_numpy(w) for w in waves]
    else:
        rows = [torch.from_numpy(log_mel(w, SAMPLE_RATE, 8, 32, 16)) for w in waves]
    return nn.utils.rnn.pad_sequence(rows, batch_first=True), torch.tensor([len(r) for r in rows])


def _reference(network: nn.Module, x: Tensor, lengths: Tensor) -> Tensor:
    """The model's own MC dropout (no norm layers): (passes, B, C) probabilities."""
    network.train()
    torch.manual_seed(0)
    outputs, chunk = [], 250
    with torch.no_grad():
        for _ in range(REFERENCE_PASSES // chunk):
            out = network(x.repeat(chunk, *[1] * (x.dim() - 1)), lengths.repeat(chunk))
            outputs.append(out.view(chunk, x.shape[0], -1))
    network.eval()
    return probabilities(torch.cat(outputs))


@pytest.mark.parametrize("cls", FAMILIES)
def test_served_moments_are_the_models_own_mc_dropout(tmp_path: Path, cls: str) -> None:
    torch.set_num_threads(1)
    model = load_model_folder(write_audio_model(tmp_path, cls))
    assert set(SHARE[cls]) <= {site.name for site in model.dropout_sites if site.sampled}
    encoded = clips()
    inputs = model.rows_to_tensor(encoded, max_rows=4)
    served = probabilities(model.predictor.sampler.sample(inputs, SERVED_PASSES, seed=0))
    reference = _reference(reference_model(cls), *_frames(encoded, cls))
    assert_moments_match(served, reference)
    # Power: per-step masks where the card locks them over time differ beyond MC error.
    unlocked = _reference(reference_model(cls, locked=False), *_frames(encoded, cls))
    assert max(differences(moments(unlocked), moments(reference)).values()) > Z


def test_the_gru_samples_its_recurrent_dropout_between_layers(tmp_path: Path) -> None:
    model = load_model_folder(write_audio_model(tmp_path, "FramesGRU"))
    sites = {site.name: site for site in model.dropout_sites}
    assert "rnn.dropout.0" in sites and sites["rnn.dropout.0"].sampled


def test_a_request_gets_the_same_bits_alone_or_fused_with_other_lengths(tmp_path: Path) -> None:
    model = load_model_folder(write_audio_model(tmp_path, "FramesGRU"))
    encoded = clips()
    short = model.rows_to_tensor(encoded[1:2], 2)
    longer = model.rows_to_tensor(encoded[2:], 2)
    sampler = model.predictor.sampler
    alone = sampler.sample(short, 40, seed=3)
    fused = sampler.sample_jobs([SampleJob(longer, 24, 1), SampleJob(short, 40, 3)])[1]
    assert torch.equal(fused, alone)


def test_the_lengths_reach_the_model(tmp_path: Path) -> None:
    """The same frames with every length set to the padded length give other answers."""
    model = load_model_folder(write_audio_model(tmp_path, "FramesGRU"))
    x, lengths = _frames(clips())
    network = reference_model("FramesGRU")
    with torch.no_grad():
        true = network(x, lengths)
        full = network(x, torch.full_like(lengths, x.shape[1]))
    assert not np.allclose(true.numpy(), full.numpy(), atol=1e-4)
    inputs = model.rows_to_tensor(clips(), 4)
    assert inputs[:, 0].tolist() == lengths.tolist()
