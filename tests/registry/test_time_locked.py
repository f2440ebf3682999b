"""Time-locked (variational) masks: ``mc_dropout: {share: {SITE: [dims]}}`` makes a dropout site
draw one mask per sequence and unit, shared over the named dimensions (Gal & Ghahramani 2016),
and the served moments then equal an AWD-LSTM LockedDropout reference within 5 MC standard
errors (``tests.moments``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from app.engine.dropout import find_dropout_layers
from app.engine.sampler import MCSampler
from app.engine.sampling import SampleJob
from app.engine.selection import select_dropout
from app.errors import ModelLoadError
from app.registry.card import ModelCard
from app.registry.loading import load_model_folder
from tests.moments import Z, assert_moments_match, differences, moments, probabilities
from tests.stochastic_models import SEQUENCE, reference_network, torch_mc_dropout, write_folder

LOCKED = {"sites": "all", "share": {"drop": [1]}}


def _noise() -> torch.Tensor:
    return torch.randn((3, *SEQUENCE), generator=torch.Generator().manual_seed(1))


def test_a_shared_mask_is_constant_over_the_shared_dimension_only() -> None:
    model = nn.Sequential(nn.Dropout(0.5)).eval()
    layers = select_dropout(find_dropout_layers(model), "all", set(), "m", {"0": [1]})
    assert layers[0].shared == (0,)
    sampler = MCSampler(model, layers, max_rows=4096)
    out = sampler.sample_jobs([SampleJob(torch.ones(2, 12, 16), 32, seed=4)])[0]
    assert out.shape == (32, 2, 12, 16)
    assert torch.equal(out, out[:, :, :1].expand_as(out))  # one mask value per unit over time
    assert torch.equal(out[:, 0], out[:, 1])  # one mask per pass, shared by a request's rows
    assert not torch.equal(out[:, :, :, 0], out[:, :, :, 1])  # units still drawn apart
    assert set(torch.unique(out).tolist()) == {0.0, 2.0}


def test_served_moments_equal_an_awd_lstm_locked_dropout_reference(tmp_path: Path) -> None:
    folder = write_folder(tmp_path, "locked", "TimeLockedLSTM", mc_dropout=LOCKED)
    model = load_model_folder(folder)
    assert model.warnings == [], model.warnings
    x = _noise()
    reference = torch_mc_dropout(reference_network(folder, locked=True), x, 4000)
    served = model.predictor.sampler.sample(x, 2000, seed=0)
    assert_moments_match(probabilities(served), probabilities(reference))
    # Power: torch's per-time-step masks (no share) are a different model, beyond the tolerance.
    plain = load_model_folder(write_folder(tmp_path, "plain", "TimeLockedLSTM"))
    per_step = plain.predictor.sampler.sample(x, 2000, seed=0)
    found = differences(moments(probabilities(per_step)), moments(probabilities(reference)))
    assert max(found.values()) > Z


def test_shared_recurrent_sites_are_seeded_and_fused_bit_identically(tmp_path: Path) -> None:
    kwargs = {"kind": "lstm", "layers": 2, "p": 0.5}
    share = {"sites": "all", "share": {"rnn.dropout.0": [1]}}
    model = load_model_folder(write_folder(tmp_path, "rnn", "SpeechRNN", kwargs, mc_dropout=share))
    assert [layer.shared for layer in model.dropout_layers] == [(0,), ()]
    x = _noise()
    sampler = model.predictor.sampler
    alone = sampler.sample_jobs([SampleJob(x, 40, 9)])[0]
    fused = sampler.sample_jobs([SampleJob(x[:1] * 3, 7, 1), SampleJob(x, 40, 9)])[1]
    assert torch.equal(alone, fused)
    assert not torch.equal(alone[0], alone[1])


def test_the_mapping_form_of_mc_dropout_is_validated(tmp_path: Path) -> None:
    base = {
        "name": "m",
        "task": "classification",
        "input": {"shape": [2]},
        "architecture": {"bundled": "dropout_mlp"},
        "weights": {"file": "w.safetensors"},
    }
    card = ModelCard.model_validate({**base, "mc_dropout": {"sites": ["a"], "share": {"a": [1]}}})
    assert (card.mc_dropout, card.dropout_share) == (["a"], {"a": [1]})
    with pytest.raises(ValueError, match="unknown keys"):
        ModelCard.model_validate({**base, "mc_dropout": {"shared": {}}})
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        ModelCard.model_validate({**base, "mc_dropout": {"share": {"a": [0]}}})
    folder = write_folder(tmp_path, "bad", "TimeLockedLSTM", mc_dropout={"share": {"nope": [1]}})
    with pytest.raises(ModelLoadError, match=r"mc_dropout\.share names nope"):
        load_model_folder(folder)
    folder = write_folder(tmp_path, "deep", "TimeLockedLSTM", mc_dropout={"share": {"drop": [3]}})
    with pytest.raises(ModelLoadError, match=r"shared over dimension\(s\) \[3\]"):
        load_model_folder(folder)
