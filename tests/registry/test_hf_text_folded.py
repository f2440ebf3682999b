"""The folded BERT / RoBERTa split (app/registry/hf_text_folded.py): the module path's numbers,
the same bits alone, fused and chunked, only the asked samples computed, and served moments
against the model's own torch MC dropout."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor

import app.registry.hf_text_folded as folded_module
from app.engine.predictor import PredictionRequest
from app.engine.sampling import SampleJob
from app.registry.loading import load_model_folder
from app.registry.served import ServedModel
from tests.hf_models import write_text_model
from tests.moments import assert_moments_match
from tests.stochastic_models import torch_mc_dropout

pytest.importorskip("transformers")

FOLDED = ["bert", "roberta"]
TEXTS = ["the staff were kind", "the box was broken and late again and again"]
LONG = ["w " * 40, "the parcel arrived at the depot on time today and the staff were kind"]


def _models(tmp_path: Path, kind: str, card: dict[str, Any] | None = None) -> tuple[Any, Any]:
    """(folded, module path) models of one folder: attention, hidden and head dropout."""
    folder = write_text_model(tmp_path, kind=kind, card=card, hidden=0.3, attention=0.2)
    folded = load_model_folder(folder)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("app.registry.hf_text.folded_split", lambda *args: None)
        plain = load_model_folder(folder)
    return folded, plain


def _sample(model: ServedModel, jobs: list[SampleJob]) -> list[Tensor]:
    return model.predictor.sampler.sample_jobs(jobs)


@pytest.mark.parametrize("kind", FOLDED)
def test_bert_and_roberta_sample_folded_and_others_keep_the_module_path(
    tmp_path: Path, kind: str
) -> None:
    folded, plain = _models(tmp_path, kind)
    assert folded.split.reason.startswith("folded ") and folded.split.applies_dropout
    assert plain.split.reason == "Hugging Face model: every sample runs the whole model"
    for other in ("distilbert", "deberta-v2"):
        model = load_model_folder(write_text_model(tmp_path / other, kind=other))
        assert not model.split.reason.startswith("folded ")
    head = load_model_folder(write_text_model(tmp_path / "head", card={"mc_dropout": "head"}))
    assert "runs once per row" in head.split.reason  # the encoder once: nothing to fold


@pytest.mark.parametrize("kind", FOLDED)
@pytest.mark.parametrize("n", [5, 16, 30])
def test_seeded_samples_are_the_module_paths(tmp_path: Path, kind: str, n: int) -> None:
    # The same masks (the sampler's streams, the cut's full-length draws); texts with padding,
    # so the key mask is applied, and N off and on the sampler's 16-row alignment.
    folded, plain = _models(tmp_path, kind)
    x = folded.rows_to_tensor(TEXTS, max_rows=4)
    assert bool((x[:, 1] == 0).any())  # padding: masked keys
    ours = _sample(folded, [SampleJob(x, n, seed=7)])[0]
    theirs = _sample(plain, [SampleJob(x, n, seed=7)])[0]
    assert ours.shape == (n, 2, 3)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
    assert not torch.equal(ours[0], ours[1])


@pytest.mark.parametrize("kind", FOLDED)
def test_a_length_off_the_alignment_computes_the_padded_layout_with_the_same_numbers(
    tmp_path: Path, kind: str
) -> None:
    card = {"input": {"type": "text", "max_length": 20}}  # bucket 20: 20 % 16 != 0
    folded, plain = _models(tmp_path, kind, card)
    x = folded.rows_to_tensor(LONG, max_rows=4)
    assert x.shape[-1] == 20
    rows = _query_rows(folded, lambda: _sample(folded, [SampleJob(x, 5, seed=2)]))
    assert rows == [16 * 20]  # 5 samples x 2 rows padded to 16 rows, each 20 positions
    ours = _sample(folded, [SampleJob(x, 5, seed=2)])[0]
    theirs = _sample(plain, [SampleJob(x, 5, seed=2)])[0]
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


def _query_rows(model: ServedModel, run: Any) -> list[int]:
    """Product rows of the first layer's query projection in each forward call of ``run``."""
    query = model.module.get_submodule(f"model.{_base(model)}.encoder.layer.0.attention.self.query")
    seen: list[int] = []
    original = folded_module._linear

    def counting(module: Any, x: Tensor) -> Tensor:
        if module is query:
            seen.append(int(x.shape[0] * x.shape[1]))
        return original(module, x)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(folded_module, "_linear", counting)
        run()
    return seen


def _base(model: ServedModel) -> str:
    return "bert" if "Bert" in type(model.module.model).__name__ else "roberta"


@pytest.mark.parametrize("kind", FOLDED)
def test_only_the_asked_samples_are_computed_and_bits_hold_alone_fused_chunked(
    tmp_path: Path, kind: str
) -> None:
    folded, _ = _models(tmp_path, kind)
    own = folded.rows_to_tensor(["the staff were kind", "late again"], max_rows=4)
    other = folded.rows_to_tensor(["friends by the river", "late"], max_rows=4)
    longer = folded.rows_to_tensor(LONG, max_rows=4)
    assert own.shape[-1] == other.shape[-1] == 16 != longer.shape[-1]
    assert bool((own[:, 1] == 0).any())
    rows = _query_rows(folded, lambda: _sample(folded, [SampleJob(own, 13, seed=7)]))
    assert rows == [13 * 2 * 16]  # not the 16 x 2 rows the sampler pads the piece to
    alone = _sample(folded, [SampleJob(own, 13, seed=7)])[0]
    jobs = [SampleJob(other, 5, 1), SampleJob(longer, 3, 4), SampleJob(own, 13, seed=7)]
    assert torch.equal(_sample(folded, jobs)[2], alone)
    sampler = folded.predictor.sampler
    sampler.max_rows = 16  # several forward calls, split at 16-sample boundaries
    chunked = _sample(folded, [SampleJob(other, 3, 1), SampleJob(own, 13, seed=7)])[1]
    assert torch.equal(chunked, alone)
    first, rest = (
        _sample(folded, [SampleJob(own, 8, seed=7)])[0],
        _sample(folded, [SampleJob(own, 5, seed=7, first_sample=8)])[0],
    )
    assert torch.equal(torch.cat([first, rest]), alone)  # rounds give the passes of one job


@pytest.mark.parametrize("kind", FOLDED)
def test_named_sites_only_are_sampled_the_others_stay_off(tmp_path: Path, kind: str) -> None:
    base = "bert" if kind == "bert" else "roberta"
    names = [
        f"{base}.encoder.layer.1.attention.self.dropout",
        f"{base}.encoder.layer.0.output.dropout",
    ]
    folded, plain = _models(tmp_path, kind, {"mc_dropout": names})
    assert folded.split.reason.startswith("folded ")
    x = folded.rows_to_tensor(TEXTS, max_rows=4)
    ours = _sample(folded, [SampleJob(x, 6, seed=3)])[0]
    theirs = _sample(plain, [SampleJob(x, 6, seed=3)])[0]
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
    assert not torch.equal(ours[0], ours[1])


class _Reference(torch.nn.Module):
    """The folder's transformers model on packed rows (eager attention), for torch MC dropout."""

    def __init__(self, folder: Path, kind: str) -> None:
        import transformers

        super().__init__()
        name = {
            "bert": "BertForSequenceClassification",
            "roberta": "RobertaForSequenceClassification",
        }
        cls = getattr(transformers, name[kind])
        self.model = cls.from_pretrained(folder, attn_implementation="eager").eval()
        self.token_types = kind == "bert"

    def forward(self, x: Tensor) -> Tensor:
        extra = {"token_type_ids": x[:, 2]} if self.token_types else {}
        logits: Tensor = self.model(input_ids=x[:, 0], attention_mask=x[:, 1], **extra).logits
        return logits


@pytest.mark.parametrize("kind", FOLDED)
def test_served_moments_match_the_models_own_mc_dropout(tmp_path: Path, kind: str) -> None:
    passes = 1000
    folder = write_text_model(tmp_path, kind=kind, hidden=0.3, attention=0.2, classifier=0.2)
    model = load_model_folder(folder)
    assert model.split.reason.startswith("folded ")
    x = model.rows_to_tensor(TEXTS, max_rows=4)
    request = PredictionRequest(x, passes, 0.9, seed=3, return_samples=True)
    served = model.predictor.predict(request).samples
    assert served is not None
    reference = torch.softmax(torch_mc_dropout(_Reference(folder, kind), x, passes).double(), -1)
    assert_moments_match(served.double(), reference)
