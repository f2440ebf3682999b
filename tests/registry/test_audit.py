"""The stochasticity audit at load: a custom source of randomness mcdrop does not sample is a load
error naming it (and so a ``check-model`` failure) unless the card acknowledges it, which the
metadata then lists; the figures compare with the model's own torch MC dropout."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from fastapi.testclient import TestClient

from app.cli import main
from app.engine.audit import audit_model
from app.errors import ModelLoadError
from app.registry import auditing
from app.registry.loading import load_model_folder
from app.registry.repository import ModelRepository
from app.registry.served import LoadOptions
from tests.moments import Z, differences, moments, probabilities
from tests.stochastic_models import (
    CUSTOM_IDS,
    CUSTOM_SOURCES,
    noise_rows,
    reference_network,
    torch_mc_dropout,
    write_folder,
)


@pytest.mark.parametrize(
    ("cls", "kwargs", "name", "kind", "per_call"), CUSTOM_SOURCES, ids=CUSTOM_IDS
)
def test_a_custom_source_is_refused_naming_it_unless_acknowledged(
    tmp_path: Path, cls: str, kwargs: dict[str, Any], name: str, kind: str, per_call: int
) -> None:
    with pytest.raises(ModelLoadError) as refused:
        load_model_folder(write_folder(tmp_path / "off", "custom", cls, kwargs))
    assert f"module '{name}' ({kind})" in refused.value.message
    assert f"unsampled: [{name}]" in refused.value.message
    folder = write_folder(tmp_path, "custom", cls, kwargs, unsampled=[name])
    model = load_model_folder(folder)
    assert model.audit is not None and model.warnings == []
    assert [(u.name, u.kind, u.acknowledged) for u in model.audit.unsampled] == [(name, kind, True)]
    # What acknowledging means: the served moments are not the model's own MC dropout.
    x = noise_rows()
    reference = torch_mc_dropout(reference_network(folder), x, 2000, per_call=per_call)
    served = model.predictor.sampler.sample(x, 2000, seed=0)
    found = differences(moments(probabilities(served)), moments(probabilities(reference)))
    assert max(found.values()) > Z, found


def test_an_acknowledged_source_is_listed_without_a_warning(
    tmp_path: Path, client_for: Callable[..., TestClient]
) -> None:
    folder = write_folder(tmp_path, "custom", "LockedLSTM", unsampled=["locked"])
    model = load_model_folder(folder)
    assert model.warnings == []
    assert model.audit is not None
    assert [(u.name, u.acknowledged) for u in model.audit.unsampled] == [("locked", True)]
    info = client_for(tmp_path).get("/v1/models/custom").json()
    assert info["unsampled"] == [
        {
            "name": "locked",
            "kind": "LockedDropout",
            "reason": "random in training mode",
            "acknowledged": True,
        }
    ]
    assert info["audit"]["passes"] > 0 and info["audit"]["reference_std"] > 0


def test_acknowledging_a_module_the_model_does_not_have_is_a_load_error(tmp_path: Path) -> None:
    folder = write_folder(tmp_path, "custom", "LockedLSTM", unsampled=["lockd"])
    with pytest.raises(ModelLoadError, match="unsampled names lockd, which is not a module"):
        load_model_folder(folder)


def test_an_unacknowledged_source_leaves_the_model_unready_with_the_reason(
    tmp_path: Path, client_for: Callable[..., TestClient]
) -> None:
    write_folder(tmp_path, "custom", "Flat", {"extra": "noise"})
    info = client_for(tmp_path).get("/v1/models/custom").json()
    assert not info["ready"]
    assert "module 'extra.1' (GaussianNoise)" in info["error"]


@pytest.mark.parametrize(
    ("kwargs", "why"),
    [
        ({}, "calls functional dropout in code torch.fx cannot trace, in training mode"),
        ({"always": True}, "calls functional dropout in code torch.fx cannot trace, even in eval"),
    ],
)
def test_a_grucell_loop_with_only_functional_dropout_is_refused_naming_it(
    tmp_path: Path, kwargs: dict[str, Any], why: str
) -> None:
    folder = write_folder(tmp_path, "vgru", "VariationalGRU", kwargs)
    with pytest.raises(ModelLoadError) as raised:
        load_model_folder(folder)
    message = raised.value.message
    assert "the model's own forward (VariationalGRU)" in message and why in message
    assert "has no dropout module" not in message


def test_the_variance_comparison_alone_catches_a_source_no_module_switch_explains(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = write_folder(tmp_path, "custom", "LockedLSTM")
    monkeypatch.setattr(auditing, "audit_model", _without_findings(audit_model))
    model = load_model_folder(folder)
    assert len(model.warnings) == 1
    assert "the model's own torch MC dropout varies more than mcdrop's passes" in model.warnings[0]


def test_what_is_served_unsampled_is_named_in_the_load_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    write_folder(tmp_path, "custom", "LockedLSTM")
    monkeypatch.setattr(auditing, "audit_model", _without_findings(audit_model))
    repository = ModelRepository(tmp_path, LoadOptions())
    with caplog.at_level(logging.WARNING, logger="app.registry.repository"):
        repository.load_all()
    model = repository.get("custom")
    assert len(model.warnings) == 1
    logged = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert logged == [f"model 'custom': {model.warnings[0]}"]


def _without_findings(audit: Callable[..., Any]) -> Callable[..., Any]:
    def run(*args: Any, **kwargs: Any) -> Any:
        from dataclasses import replace

        return replace(audit(*args, **kwargs), findings=[])

    return run


def test_recurrent_and_plain_dropout_models_pass_the_audit(tmp_path: Path) -> None:
    kwargs = {"kind": "lstm", "layers": 2, "p": 0.5, "head_p": 0.05}
    model = load_model_folder(write_folder(tmp_path, "speech", "SpeechRNN", kwargs))
    assert model.audit is not None and model.audit.unsampled == []
    assert model.audit.report.gap is not None and not model.audit.report.gap.excess


def _check(folder: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["check-model", str(folder), "--runs", "2", "--n-samples", "10"])
    return code, capsys.readouterr().out


def test_check_model_fails_naming_the_unsampled_module(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = _check(write_folder(tmp_path, "custom", "LockedLSTM"), capsys)
    assert code == 1
    assert "module 'locked' (LockedDropout) is a source of randomness" in out
    assert "unsampled: [locked]" in out and "OK: no problems found" not in out


def test_check_model_shows_an_acknowledged_source_and_passes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = write_folder(tmp_path, "custom", "LockedLSTM", unsampled=["locked"])
    code, out = _check(folder, capsys)
    assert code == 0, out
    rows = [line.split() for line in out.splitlines() if line.startswith("locked ")]
    assert rows == [["locked", "LockedDropout", "random", "in", "training", "mode", "yes"]]


def test_a_torchscript_stacked_lstm_is_named_not_passed_as_ok(tmp_path: Path) -> None:
    """TorchScript cannot be unrolled; its LSTM's inter-layer dropout is named by the audit."""
    kwargs = {"kind": "lstm", "layers": 2, "p": 0.5}
    folder = write_folder(tmp_path, "ts", "SpeechRNN", kwargs)
    scripted = torch.jit.script(reference_network(folder))
    torch.jit.save(scripted, str(folder / "model.ts"))
    card = yaml.safe_load((folder / "model.yaml").read_text())
    card |= {"architecture": {"torchscript": "model.ts"}, "weights": {}}
    (folder / "model.yaml").write_text(yaml.safe_dump(card))
    with pytest.raises(ModelLoadError) as refused:
        load_model_folder(folder)
    assert "module 'rnn' (LSTM)" in refused.value.message
    assert "mc_dropout: {modules" not in refused.value.message  # TorchScript cannot take it
