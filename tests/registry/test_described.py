"""Described models (what an inference process's HTTP workers hold): every bundled model's
description travels over the wire and builds the same inputs as the loaded model."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from app.dataplane import wire
from app.registry.described import describe, described_model
from app.registry.loading import load_model_folder
from tests.hf_audio import write_audio_model
from tests.support import BUNDLED_MODEL_NAMES, BUNDLED_MODELS


@pytest.mark.parametrize("name", sorted(BUNDLED_MODEL_NAMES))
def test_a_bundled_models_description_pickles_and_builds_the_same_rows(name: str) -> None:
    # a closure in a kind (a feature step, say) would not pickle: mcdrop serve would not start
    model = load_model_folder(BUNDLED_MODELS / name)
    frame = wire.dumps(describe(model))
    described = described_model(pickle.loads(frame[4:]))
    rows = model.input_kind.example_rows(2)
    assert torch.equal(described.rows_to_tensor(rows, 2), model.rows_to_tensor(rows, 2))
    assert sum(p.numel() for p in described.module.parameters()) == 0


def test_a_hugging_face_audio_models_description_pickles(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    model = load_model_folder(write_audio_model(tmp_path, "w", "wav2vec2"))
    described = described_model(pickle.loads(wire.dumps(describe(model))[4:]))
    rows = model.input_kind.example_rows(2)
    assert torch.equal(described.rows_to_tensor(rows, 2), model.rows_to_tensor(rows, 2))
