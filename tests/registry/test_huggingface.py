"""Hugging Face text classifier folders: loading, every dropout sampled, head mode, seeds."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from torch import Tensor

from app.config import load_settings
from app.engine.sampler import MCSampler
from app.engine.sampling import SampleJob
from app.errors import ModelLoadError
from app.registry.huggingface import SUPPORTED
from app.registry.loading import load_model_folder
from app.registry.repository import ModelRepository
from app.registry.served import LoadOptions, ServedModel
from tests.hf_models import write_text_model
from tests.support import write_model

KINDS = ["bert", "distilbert", "roberta", "deberta-v2"]


def _passes(model: ServedModel, texts: list[str], n: int = 6, seed: int = 3) -> Tensor:
    inputs = model.rows_to_tensor(texts, max_rows=16)
    return model.predictor.sampler.sample_jobs([SampleJob(inputs, n, seed)])[0]


@pytest.mark.parametrize("kind", KINDS)
def test_each_supported_architecture_loads_and_samples_attention_dropout(
    tmp_path: Path, kind: str
) -> None:
    # Only attention-probability dropout is non-zero: if it were not sampled (transformers
    # applies it functionally, off in eval mode) every pass would be the same.
    folder = write_text_model(tmp_path, kind=kind, hidden=0.0, attention=0.3, classifier=0.0)
    model = load_model_folder(folder)
    passes = _passes(model, ["the staff were kind", "the box was broken and late"])
    assert passes.shape == (6, 2, 3)
    assert not torch.equal(passes[0], passes[1])
    assert model.card.labels == ["neg", "neutral", "pos"]
    attention = [site for site in model.dropout_sites if site.role == "attention"]
    assert len(attention) == 2 and all(site.sampled and site.p == 0.3 for site in attention)


@pytest.mark.parametrize("kind", KINDS)
def test_last_layer_computes_the_first_token_only_and_samples_as_if_whole(
    tmp_path: Path, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The head reads the first token, so the last layer after its attention runs for that
    # position only; its dropout keeps drawing the whole sequence's masks, so a seeded run gives
    # the numbers of the uncut model (up to the rounding of smaller matrix products).
    folder = write_text_model(tmp_path, kind=kind, hidden=0.3, attention=0.2, classifier=0.2)
    texts = ["the staff were kind", "the box was broken and late again"]
    cut = load_model_folder(folder)
    widths: list[int] = []
    last: Any = _last_layer(cut.module.model, kind)
    if kind in ("bert", "roberta"):  # folded (test_hf_text_folded.py): its own layer code
        assert cut.split.reason.startswith("folded ")
        last.attention.output.dense.register_forward_pre_hook(
            lambda module, args: widths.append(args[0].shape[1])
        )
        ours = _passes(cut, texts, n=20)
        assert widths == [1]  # the attention output block ran for the first position only
    else:
        last.register_forward_hook(lambda module, args, out: widths.append(_hidden(out).shape[1]))
        scored = _scored_queries(cut, kind)
        ours = _passes(cut, texts, n=20)
        assert widths == [1]  # one forward call, whose last layer kept one position
        if kind != "deberta-v2":  # its own attention code: all queries scored
            assert scored == [1]  # and whose attention scored the first query only
    architecture = type(cut.module.model).__name__
    whole = dataclasses.replace(SUPPORTED[architecture], last_layer=lambda model: None)
    monkeypatch.setitem(SUPPORTED, architecture, whole)
    monkeypatch.setattr(
        "app.registry.hf_text.folded_split", lambda *args: None
    )  # the module path, uncut
    uncut = load_model_folder(folder)
    widths.clear()
    _last_layer(uncut.module.model, kind).register_forward_hook(
        lambda module, args, out: widths.append(_hidden(out).shape[1])
    )
    theirs = _passes(uncut, texts, n=20)
    assert widths == [cut.rows_to_tensor(texts, max_rows=4).shape[-1]]  # every position
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)
    assert not torch.equal(ours[0], ours[1])


def _last_layer(model: Any, kind: str) -> torch.nn.Module:
    if kind == "distilbert":
        return model.distilbert.transformer.layer[-1]  # type: ignore[no-any-return]
    base = {"bert": "bert", "roberta": "roberta", "deberta-v2": "deberta"}[kind]
    return getattr(model, base).encoder.layer[-1]  # type: ignore[no-any-return]


def _scored_queries(model: ServedModel, kind: str) -> list[int]:
    """Queries scored by the last layer's attention dropout, appended at each call."""
    layer: Any = _last_layer(model.module.model, kind)
    attention = layer.attention if kind == "distilbert" else layer.attention.self
    scored: list[int] = []
    attention.dropout.register_forward_hook(
        lambda module, args, out: scored.append(args[0].shape[-2])
    )
    return scored


def _hidden(output: Any) -> Tensor:
    return output[0] if isinstance(output, tuple) else output  # type: ignore[no-any-return]


def test_deberta_samples_its_hidden_dropout_and_lists_the_position_table_dropout_unsampled(
    tmp_path: Path,
) -> None:
    # DeBERTa-v2 applies its hidden dropout rate to the relative-position table too (one
    # table for every row): that site cannot take a mask per pass, every other one is sampled
    # (before, any hidden dropout made the folded pass fail on the table's shape).
    folder = write_text_model(tmp_path, kind="deberta-v2", hidden=0.2, attention=0.0)
    model = load_model_folder(folder)
    passes = _passes(model, ["the staff were kind"])
    assert not torch.equal(passes[0], passes[1])
    shared = [site for site in model.dropout_sites if site.name.endswith("pos_dropout")]
    assert len(shared) == 2 and not any(site.sampled for site in shared)
    hidden = [s for s in model.dropout_sites if s.name.endswith("output.dropout")]
    assert len(hidden) == 4 and all(site.sampled for site in hidden)
    card = yaml.safe_load((folder / "model.yaml").read_text())
    card["mc_dropout"] = [shared[0].name, hidden[0].name]
    (folder / "model.yaml").write_text(yaml.safe_dump(card))
    with pytest.raises(ModelLoadError, match="relative-position table"):
        load_model_folder(folder)


def test_model_without_any_nonzero_dropout_is_refused(tmp_path: Path) -> None:
    folder = write_text_model(tmp_path, hidden=0.0, attention=0.0, classifier=0.0)
    with pytest.raises(ModelLoadError, match="p = 0"):
        load_model_folder(folder)


def test_eval_forward_is_unchanged_and_dropout_is_off_outside_a_run(tmp_path: Path) -> None:
    import transformers

    folder = write_text_model(tmp_path, attention=0.5)
    model = load_model_folder(folder)
    loaded = transformers.BertForSequenceClassification.from_pretrained(folder)
    reference = loaded.eval()  # type: ignore[no-untyped-call]
    x = model.rows_to_tensor(["a calm evening", "nobody answered the phone"], max_rows=4)
    with torch.inference_mode():
        ours = model.module(x)
        theirs = reference(input_ids=x[:, 0], attention_mask=x[:, 1], token_type_ids=x[:, 2])
    torch.testing.assert_close(ours, theirs.logits, rtol=1e-5, atol=1e-6)


def test_seeded_results_are_identical_alone_and_fused_with_other_lengths(tmp_path: Path) -> None:
    model = load_model_folder(write_text_model(tmp_path, attention=0.2, hidden=0.2))
    sampler = model.predictor.sampler
    assert isinstance(sampler, MCSampler)
    own = model.rows_to_tensor(["the parcel arrived", "great food"], max_rows=4)
    longer = model.rows_to_tensor(["the engine failed twice " * 4], max_rows=4)
    same_bucket = model.rows_to_tensor(["friends by the river"], max_rows=4)
    alone = sampler.sample_jobs([SampleJob(own, 20, seed=7)])[0]
    fused = sampler.sample_jobs(
        [SampleJob(longer, 5, 1), SampleJob(same_bucket, 9, 2), SampleJob(own, 20, seed=7)]
    )
    assert longer.shape[-1] != own.shape[-1] == same_bucket.shape[-1]
    assert torch.equal(fused[2], alone)
    assert torch.equal(sampler.sample_jobs([SampleJob(own, 20, seed=7)])[0], alone)
    assert not torch.equal(sampler.sample_jobs([SampleJob(own, 20, seed=8)])[0], alone)
    assert sampler.max_rows == 4096 // 32  # TOKENS_PER_CHUNK // max_length
    sampler.max_rows = 16  # chunked: a few samples per forward call, the same numbers
    chunked = sampler.sample_jobs([SampleJob(same_bucket, 3, 2), SampleJob(own, 20, seed=7)])
    assert torch.equal(chunked[1], alone)


def test_head_mode_runs_the_encoder_once_per_request(tmp_path: Path) -> None:
    folder = write_text_model(tmp_path, card={"mc_dropout": "head"}, classifier=0.4)
    model = load_model_folder(folder)
    calls: list[int] = []
    encoder = model.module.get_submodule("model.bert")
    encoder.register_forward_hook(lambda module, args, out: calls.append(1))
    passes = _passes(model, ["the staff were kind", "late again"], n=12)
    assert len(calls) == 1
    assert not torch.equal(passes[0], passes[1])
    assert [site.name for site in model.dropout_sites if site.sampled] == ["dropout"]
    assert "runs once per row" in model.split.reason
    assert 0.9 < model.split.prefix_fraction < 1.0


def test_roberta_head_draws_a_fresh_mask_for_each_call_of_its_dropout(tmp_path: Path) -> None:
    # RobertaClassificationHead applies one dropout module twice (before and after its dense
    # layer): each call gets its own masks, as in training.
    folder = write_text_model(tmp_path, kind="roberta", card={"mc_dropout": "head"})
    model = load_model_folder(folder)
    seen: list[Tensor] = []
    dropout = model.module.get_submodule("model.classifier.dropout")
    dropout.register_forward_hook(lambda module, args, out: seen.append((out == 0).clone()))
    _passes(model, ["a calm evening"], n=2)
    assert len(seen) == 2 and seen[0].shape == seen[1].shape
    assert not torch.equal(seen[0], seen[1])


def test_named_sites_only(tmp_path: Path) -> None:
    names = ["bert.encoder.layer.1.attention.self.dropout"]
    model = load_model_folder(write_text_model(tmp_path, card={"mc_dropout": names}))
    assert [layer.name for layer in model.dropout_layers] == names
    assert sum(site.sampled for site in model.dropout_sites) == 1


def test_unknown_site_name_is_a_load_error_listing_the_sites(tmp_path: Path) -> None:
    folder = write_text_model(tmp_path, card={"mc_dropout": ["bert.nope"]})
    with pytest.raises(ModelLoadError, match=r"bert\.nope.*bert\.embeddings\.dropout"):
        load_model_folder(folder)


def test_unsupported_architecture_names_the_supported_ones(tmp_path: Path) -> None:
    folder = write_text_model(tmp_path)
    config = json.loads((folder / "config.json").read_text())
    config["architectures"] = ["BertForMaskedLM"]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match=r"not supported.*DebertaV2ForSequenceClassification"):
        load_model_folder(folder)


def test_pickled_weights_are_refused(tmp_path: Path) -> None:
    folder = write_text_model(tmp_path)
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
    with pytest.raises(ModelLoadError, match=r"no \.safetensors weights"):
        load_model_folder(folder)


def test_card_max_length_beyond_the_model_positions_is_refused(tmp_path: Path) -> None:
    folder = write_text_model(tmp_path, card={"input": {"type": "text", "max_length": 500}})
    with pytest.raises(ModelLoadError, match="exceeds the model's 66 positions"):
        load_model_folder(folder)


def test_without_transformers_the_folder_fails_with_the_install_hint_and_others_serve(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_text_model(tmp_path, name="text-model")
    write_model(tmp_path, "tiny")
    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers -> ImportError
    repository = ModelRepository(tmp_path, LoadOptions())
    repository.load_all()
    failed = repository.entry("text-model")
    assert not failed.ready and failed.error is not None
    assert 'pip install "mcdrop[text]"' in failed.error
    assert repository.entry("tiny").ready
    assert load_settings(models_dir=tmp_path).models_dir == tmp_path


def test_text_rows_are_checked_and_name_the_field(tmp_path: Path) -> None:
    from app.errors import InvalidInputError

    model = load_model_folder(
        write_text_model(tmp_path, card={"input": {"type": "text", "max_characters": 20}})
    )
    cases: dict[str, list[Any]] = {
        "inputs": [],
        "inputs[1]": ["fine", 3],
        "inputs[0].text_pair": [{"text": "a", "text_pair": ["b"]}],
        "inputs[0]": [{"txt": "a"}],
        "inputs[2]": ["a", "b", "x" * 21],
    }
    for field, rows in cases.items():
        with pytest.raises(InvalidInputError) as caught:
            model.rows_to_tensor(rows, max_rows=8)
        assert caught.value.field == field, rows
    with pytest.raises(InvalidInputError, match="limit of 2"):
        model.rows_to_tensor(["a", "b", "c"], max_rows=2)


def test_pairs_are_tokenized_with_segment_ids_and_padding_masked(tmp_path: Path) -> None:
    model = load_model_folder(write_text_model(tmp_path))
    x = model.rows_to_tensor([{"text": "kind staff", "text_pair": "late box"}, "river"], 4)
    assert x.shape == (2, 3, 16) and x.dtype == torch.int64
    ids, mask, types = x[0]
    length, first_sep = int(mask.sum()), ids.tolist().index(3)  # [SEP] is token 3
    assert types[: first_sep + 1].eq(0).all() and types[first_sep + 1 : length].eq(1).all()
    assert types[length:].eq(0).all() and ids[length - 1] == 3
    single = int(x[1, 1].sum())  # [CLS] river [SEP], then [PAD] (token 0), masked out
    assert x[1, 0, 0] == 2 and x[1, 0, single - 1] == 3 and x[1, 0, single:].eq(0).all()


def test_texts_are_truncated_to_max_length(tmp_path: Path) -> None:
    model = load_model_folder(write_text_model(tmp_path))
    x = model.rows_to_tensor(["kind " * 100], max_rows=1)
    assert x.shape == (1, 3, 32) and int(x[0, 1].sum()) == 32
