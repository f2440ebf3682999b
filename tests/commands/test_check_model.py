"""``mcdrop check-model``: loading, dropout layers, prefix split, a timed sample run, and every
problem found."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import yaml

from app.cli import main
from tests.support import BUNDLED_MODELS

_MORE_NETS = textwrap.dedent(
    """

    import torch.nn.functional as F


    class IgnoresDropout(TinyNet):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            hidden = self.inp(x)
            self.drop(hidden)
            return self.out(hidden)


    class FunctionalDropout(TinyNet):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if x.sum() > 1e9:  # data-dependent control flow: torch.fx cannot trace it
                x = x * 2
            hidden = F.dropout(self.inp(x), 0.5, self.training)
            return self.out(self.drop(hidden))
    """
)

NO_DROPOUT_STATE = {"inp.weight": torch.eye(2), "inp.bias": torch.zeros(2)}


def _check(folder: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["check-model", str(folder), "--runs", "2", "--n-samples", "10"])
    return code, capsys.readouterr().out


def test_bundled_model_passes(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _check(BUNDLED_MODELS / "digits-mlp", capsys)
    assert code == 0, out
    assert "model      digits-mlp v1 (classification)" in out
    assert "prefix     " in out and "runs once per row" in out
    layers = [line.split() for line in out.splitlines() if line.startswith("body.")]
    assert layers == [["body.2", "Dropout", "0.2"], ["body.5", "Dropout", "0.2"]]
    assert "sample run 8 rows x 10 passes: first" in out
    assert out.rstrip().endswith("OK: no problems found")


@pytest.mark.parametrize("name", sorted(p.name for p in BUNDLED_MODELS.iterdir() if p.is_dir()))
def test_every_bundled_model_passes(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _check(BUNDLED_MODELS / name, capsys)
    assert code == 0, out
    assert f"model      {name} v" in out
    assert "sample run 8 rows x 10 passes: first" in out


class _BrokenError(Exception):
    pass


@pytest.mark.parametrize(
    ("target", "check"),
    [
        ("_load", "loading the folder"),
        ("describe", "describing the model"),
        ("_sample_checks", "the sample run"),
    ],
)
def test_a_check_that_raises_is_a_problem_not_a_traceback(
    target: str, check: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.commands import check_model

    def broken(*args: object, **kwargs: object) -> None:
        raise _BrokenError("a bug in the model's code")

    monkeypatch.setattr(check_model, target, broken)
    code, out = _check(BUNDLED_MODELS / "digits-mlp", capsys)
    assert code == 1
    assert f"  - {check} failed: _BrokenError: a bug in the model's code" in out


def _with_nets(folder: Path) -> Path:
    with (folder / "net.py").open("a") as handle:
        handle.write(_MORE_NETS)
    return folder


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"kwargs": {"p": 0.0}}, "every one has p = 0"),
        ({"cls": "NoDropoutNet", "state": NO_DROPOUT_STATE}, "has no dropout module"),
        ({"card": {"labels": ["a", "b", "c"]}}, "3 labels but 2 outputs"),
        ({"cls": "IgnoresDropout"}, "every MC pass gave the same output"),
        ({"cls": "FunctionalDropout"}, "functional dropout in"),
    ],
)
def test_problems_are_reported_and_fail(
    model_factory: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
    options: dict[str, object],
    problem: str,
) -> None:
    folder = _with_nets(model_factory("suspect", **options))
    code, out = _check(folder, capsys)
    assert code == 1
    assert "problem(s):" in out and problem in out


def test_missing_checksum_is_only_a_warning(
    model_factory: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    folder = model_factory("unsigned")
    card = yaml.safe_load((folder / "model.yaml").read_text())
    del card["weights"]["sha256"]
    (folder / "model.yaml").write_text(yaml.safe_dump(card))
    code, out = _check(folder, capsys)
    assert code == 0
    assert "warning: weights.sha256 missing" in out


def test_traced_torchscript_is_reported_as_traced(
    model_factory: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    folder = model_factory("traced")
    model = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.Dropout(0.5), torch.nn.Linear(4, 2))
    traced = torch.jit.trace(model.eval(), torch.randn(3, 2))  # type: ignore[no-untyped-call]
    torch.jit.save(traced, str(folder / "model.ts"))
    card = yaml.safe_load((folder / "model.yaml").read_text())
    card |= {"architecture": {"torchscript": "model.ts"}, "weights": {}}
    (folder / "model.yaml").write_text(yaml.safe_dump(card))
    code, out = _check(folder, capsys)
    assert code == 1
    assert "traced with torch.jit.trace: dropout is fixed in the graph" in out
    assert "export with torch.jit.script" in out and "p = 0" not in out


TAGS = {"id2label": {0: "O", 1: "PER", 2: "LOC"}}
TOPICS = {
    "id2label": {0: "billing", 1: "paperwork", 2: "delivery"},
    "problem_type": "multi_label_classification",
}


@pytest.mark.parametrize(
    ("head", "labels", "task"),
    [("Token", TAGS, "token_classification"), ("Sequence", TOPICS, "multilabel")],
)
def test_a_tiny_model_of_each_new_task_passes(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    head: str,
    labels: dict[str, object],
    task: str,
) -> None:
    pytest.importorskip("transformers")
    from tests.hf_models import write_text_model

    folder = write_text_model(tmp_path, f"tiny-{task}", head=head, labels=labels)
    code, out = _check(folder, capsys)
    assert code == 0, out
    assert f"model      tiny-{task} v" in out and f"({task})" in out
    assert out.rstrip().endswith("OK: no problems found")
