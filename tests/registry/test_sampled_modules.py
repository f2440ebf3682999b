"""Custom stochastic modules sampled as they are (``mc_dropout: {modules: [...]}``): run pass by
pass in training mode under a generator seeded per (request seed, site, pass). Served moments
equal each model's own torch MC dropout within 5 MC standard errors (``tests.moments``); seeded
requests keep the sampler contract (rounds, neighbours)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from fastapi.testclient import TestClient

from app.engine.module_sites import SAMPLED_MODULE_NOTE
from app.errors import ModelLoadError
from app.registry.loading import load_model_folder
from tests.engine.sampler_contract import check_sampler_contract
from tests.moments import assert_moments_match, probabilities
from tests.stochastic_models import (
    CUSTOM_IDS,
    CUSTOM_SOURCES,
    noise_rows,
    reference_network,
    torch_mc_dropout,
    write_folder,
)

CASES = [(cls, kwargs, name, per_call) for cls, kwargs, name, _, per_call in CUSTOM_SOURCES]


@pytest.mark.parametrize(("cls", "kwargs", "name", "per_call"), CASES, ids=CUSTOM_IDS)
def test_served_moments_equal_the_models_own_mc_dropout(
    tmp_path: Path, cls: str, kwargs: dict[str, Any], name: str, per_call: int
) -> None:
    folder = write_folder(tmp_path, "m", cls, kwargs, mc_dropout={"modules": [name]})
    model = load_model_folder(folder)
    assert model.warnings == [] and model.audit is not None and model.audit.unsampled == []
    assert [(s.name, s.role) for s in model.dropout_sites if s.role == "module"] == [
        (name, "module")
    ]
    x = noise_rows()
    served = model.predictor.sampler.sample(x, 2000, seed=0)
    reference = torch_mc_dropout(reference_network(folder), x, 2000, per_call=per_call)
    assert_moments_match(probabilities(served), probabilities(reference))


@pytest.mark.parametrize(("cls", "kwargs", "name", "per_call"), CASES[:2], ids=CUSTOM_IDS[:2])
def test_sampled_modules_keep_the_sampler_contract(
    tmp_path: Path, cls: str, kwargs: dict[str, Any], name: str, per_call: int
) -> None:
    folder = write_folder(tmp_path, "m", cls, kwargs, mc_dropout={"modules": [name]})
    check_sampler_contract(load_model_folder(folder).predictor.sampler, noise_rows(2))


def test_the_global_generator_is_left_as_it_was(tmp_path: Path) -> None:
    folder = write_folder(tmp_path, "m", "LockedLSTM", mc_dropout={"modules": ["locked"]})
    model = load_model_folder(folder)
    torch.manual_seed(5)
    expected = torch.rand(4)
    torch.manual_seed(5)
    model.predictor.sampler.sample(noise_rows(), 40, seed=1)
    assert torch.equal(torch.rand(4), expected)
    assert not any(module.training for module in model.module.modules())


def test_metadata_names_the_site_and_its_guarantee(
    tmp_path: Path, client_for: Callable[..., TestClient]
) -> None:
    write_folder(tmp_path, "m", "LockedLSTM", mc_dropout={"modules": ["locked"]})
    info = client_for(tmp_path).get("/v1/models/m").json()
    sites = {d["name"]: d for d in info["dropout"]}
    assert sites["locked"]["site"] == "module" and sites["locked"]["sampled"]
    assert sites["locked"]["note"] == SAMPLED_MODULE_NOTE
    assert info["unsampled"] == [] and info["warnings"] == []


@pytest.mark.parametrize(
    ("cls", "modules", "message"),
    [
        ("LockedLSTM", ["lockd"], "no module 'lockd'"),
        ("Flat", [""], "no module ''"),
    ],
)
def test_naming_what_cannot_be_a_module_site_is_a_load_error(
    tmp_path: Path, cls: str, modules: list[str], message: str
) -> None:
    folder = write_folder(tmp_path, "m", cls, mc_dropout={"modules": modules})
    with pytest.raises(ModelLoadError, match=message):
        load_model_folder(folder)


def test_a_module_holding_dropout_sites_is_refused(tmp_path: Path) -> None:
    kwargs = {"kind": "lstm", "layers": 2, "p": 0.5}
    folder = write_folder(tmp_path, "m", "SpeechRNN", kwargs, mc_dropout={"modules": ["rnn"]})
    with pytest.raises(ModelLoadError, match=r"'rnn' holds dropout sites \(rnn\.dropout\.0\)"):
        load_model_folder(folder)
