"""The text kind: strings and text pairs through the folder's tokenizer, v2 BYTES tensors, and a
probe of the tokenizer's own vocabulary words."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from torch import Tensor

from app.cli import main
from app.inputs.base import INPUT_NAME, Rows, WireTensor
from app.inputs.text import TextKind, vocabulary_words
from app.registry.text import TextEncoder
from tests.hf_models import wordpiece_tokenizer, write_text_model
from tests.inputs.kind_contract import KindCase, check_input_kind

TEXTS = ["the staff were kind", "the box was broken and late"]


def _kind() -> TextKind:
    return TextKind(TextEncoder(wordpiece_tokenizer(), max_length=32, max_characters=200))


def _bytes(texts: list[str]) -> bytes:
    return b"".join(struct.pack("<I", len(t.encode())) + t.encode() for t in texts)


def _in_vocabulary(rows: Rows, probe: Tensor) -> bool:
    """Every word a known token: no [UNK] among the probe's tokens, and every row non-empty."""
    unknown = wordpiece_tokenizer().unk_token_id
    ids, mask = probe[:, 0], probe[:, 1].bool()
    words = [word for row in rows for word in row.split()]
    vocabulary = wordpiece_tokenizer().get_vocab()
    known = all(word in vocabulary for word in words)
    return known and not bool((ids[mask] == unknown).any()) and all(row for row in rows)


def test_text_keeps_the_contract() -> None:
    raw = _bytes(TEXTS)
    check_input_kind(
        KindCase(
            kind=_kind(),
            rows=TEXTS,
            v2_json=WireTensor(INPUT_NAME, "BYTES", [2], data=TEXTS),
            v2_binary=WireTensor(INPUT_NAME, "BYTES", [2], binary_size=len(raw), binary=raw),
            bad_rows=["fine", 7],
            bad_field="inputs[1]",
            in_domain=_in_vocabulary,
            describes="text",
        )
    )


def test_the_probe_is_vocabulary_words_of_several_lengths() -> None:
    kind = _kind()
    rows = list(kind.example_rows(3))
    assert len({len(row.split()) for row in rows}) == 3, rows
    words = vocabulary_words(wordpiece_tokenizer(), 12)
    assert rows[0].split() == words
    probe = kind.probe(3)
    assert probe[:, 1].sum(1).tolist() == [len(r.split()) + 2 for r in rows]  # + [CLS], [SEP]


def test_the_probe_fits_the_character_limit() -> None:
    kind = TextKind(TextEncoder(wordpiece_tokenizer(), max_length=32, max_characters=20))
    rows = list(kind.example_rows(3))
    assert all(1 <= len(row) <= 20 for row in rows) and all(row.split() for row in rows), rows
    assert kind.probe(3).shape[0] == 3


def test_pairs_are_two_bytes_per_row() -> None:
    kind = _kind()
    pair = WireTensor(INPUT_NAME, "BYTES", [1, 2], data=[["the box", "was late"]])
    rows = kind.v2_rows({INPUT_NAME: pair})
    assert rows == [{"text": "the box", "text_pair": "was late"}]
    second = wordpiece_tokenizer()("was late", add_special_tokens=False)["input_ids"]
    assert int(kind.rows(rows, 1)[0, 2].sum()) == len(second) + 1  # its tokens and [SEP]


def test_check_model_samples_a_text_model_on_vocabulary_sentences(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = write_text_model(tmp_path)
    arguments = ["check-model", str(folder), "--rows", "3", "--runs", "2", "--n-samples", "8"]
    assert main(arguments) == 0, capsys.readouterr().out
    assert "text, up to 32 tokens" in capsys.readouterr().out
