"""Token-id and variable-length models served end to end: their moments equal the model's own
torch MC dropout (training mode, many passes) within 5 Monte Carlo standard errors, a seeded
request gets the same numbers alone or fused with requests of other lengths, and bad ids or
lengths are 4xx naming the row and position."""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from torch import Tensor, nn

from app.cli import main
from app.engine.sampling import SampleJob
from app.registry.loading import load_model_folder
from app.registry.served import ServedModel
from tests.inputs.models import FEATURES, VOCAB, reference_model, write_sequence_model
from tests.moments import Z, assert_moments_match, differences, moments, probabilities

ClientFor = Callable[..., TestClient]
SERVED_PASSES = 2000
REFERENCE_PASSES = 4000
LENGTHS = (3, 9, 1, 14)


def _sequences(lengths: tuple[int, ...] = LENGTHS, seed: int = 1) -> list[Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn((n, FEATURES), generator=generator) for n in lengths]


def _padded(rows: list[Tensor]) -> tuple[Tensor, Tensor]:
    """(B, T, F) zero-padded to the longest row, and the lengths (B,)."""
    return nn.utils.rnn.pad_sequence(rows, batch_first=True), torch.tensor([len(r) for r in rows])


def _reference(network: nn.Module, *inputs: Tensor, passes: int = REFERENCE_PASSES) -> Tensor:
    """The model's own MC dropout (no norm layers to freeze): (passes, B, C) probabilities."""
    network.train()
    torch.manual_seed(0)
    outputs = []
    with torch.no_grad():
        for _ in range(passes // 200):
            repeated = [x.repeat(200, *[1] * (x.dim() - 1)) for x in inputs]
            out = network(*repeated)
            outputs.append(out.view(200, inputs[0].shape[0], -1))
    network.eval()
    return probabilities(torch.cat(outputs))


def _served(model: ServedModel, rows: list[list[object]], n: int = SERVED_PASSES) -> Tensor:
    inputs = model.rows_to_tensor(rows, max_rows=len(rows))
    return probabilities(model.predictor.sampler.sample(inputs, n, seed=0))


def test_token_ids_are_embedded_as_their_own_mc_dropout(tmp_path: Path) -> None:
    model = load_model_folder(write_sequence_model(tmp_path, "TokenBag"))
    ids = torch.randint(0, VOCAB, (3, 6), generator=torch.Generator().manual_seed(2))
    reference = _reference(reference_model("TokenBag"), ids)
    assert_moments_match(_served(model, ids.tolist()), reference)
    other = torch.randint(0, VOCAB, (3, 6), generator=torch.Generator().manual_seed(3))
    elsewhere = _served(model, other.tolist())
    assert max(differences(moments(elsewhere), moments(reference)).values()) > Z  # has power


@pytest.mark.parametrize("cls", ["SequenceGRU", "MeanPooled"])
def test_lengths_reach_forward_as_in_its_own_mc_dropout(tmp_path: Path, cls: str) -> None:
    model = load_model_folder(write_sequence_model(tmp_path, cls))
    rows = _sequences()
    reference = _reference(reference_model(cls), *_padded(rows))
    assert_moments_match(_served(model, [r.tolist() for r in rows]), reference)
    # The lengths matter: the same padded rows taken as full-length differ beyond MC error.
    x, _ = _padded(rows)
    full = torch.full((len(rows),), x.shape[1])
    ignored = _reference(reference_model(cls), x, full)
    assert max(differences(moments(ignored), moments(reference)).values()) > Z


def test_a_traceable_lengths_model_runs_its_prefix_once_per_row(tmp_path: Path) -> None:
    pooled = load_model_folder(write_sequence_model(tmp_path, "MeanPooled"))
    assert pooled.split.prefix_fraction > 0.5, pooled.split.reason
    gru = load_model_folder(write_sequence_model(tmp_path, "SequenceGRU"))
    assert gru.split.prefix_fraction == 0.0 and "no prefix split" in gru.split.reason


@pytest.mark.parametrize("cls", ["SequenceGRU", "MeanPooled"])
def test_a_request_gets_the_same_bits_alone_or_fused_with_other_lengths(
    tmp_path: Path, cls: str
) -> None:
    model = load_model_folder(write_sequence_model(tmp_path, cls))
    short = model.rows_to_tensor([r.tolist() for r in _sequences((3, 5))], 4)
    longer = model.rows_to_tensor([r.tolist() for r in _sequences((30, 2), seed=4)], 4)
    same_bucket = model.rows_to_tensor([r.tolist() for r in _sequences((16, 7), seed=5)], 4)
    sampler = model.predictor.sampler
    alone = sampler.sample(short, 48, seed=7)
    for neighbour in (longer, same_bucket):
        fused = sampler.sample_jobs([SampleJob(neighbour, 40, 1), SampleJob(short, 48, 7)])[1]
        assert torch.equal(fused, alone)


def test_v1_and_v2_json_and_binary_give_the_same_answer(
    tmp_path: Path, client_for: ClientFor
) -> None:
    write_sequence_model(tmp_path, "SequenceGRU", name="gru")
    client = client_for(tmp_path)
    rows = [r.tolist() for r in _sequences((3, 5))]
    v1 = client.post("/v1/models/gru/predict", json={"inputs": rows, "seed": 2, "n_samples": 40})
    assert v1.status_code == 200, v1.text
    x, lengths = _padded(_sequences((3, 5)))
    tensors = [
        {"name": "input", "datatype": "FP32", "shape": list(x.shape), "data": x.flatten().tolist()},
        {"name": "lengths", "datatype": "INT64", "shape": [2], "data": lengths.tolist()},
    ]
    parameters = {"seed": 2, "n_samples": 40}
    v2 = client.post("/v2/models/gru/infer", json={"inputs": tensors, "parameters": parameters})
    assert v2.status_code == 200, v2.text
    outputs = {o["name"]: o["data"] for o in v2.json()["outputs"]}
    expected = [p for row in v1.json()["predictions"] for p in row["mean"]]
    as_float32 = np.float32  # both answers print the same float32 numbers
    assert [as_float32(v) for v in outputs["mean"]] == [as_float32(v) for v in expected]
    raw = x.numpy().astype("<f4").tobytes()
    lengths_raw = struct.pack("<2q", *lengths.tolist())
    header = {
        "inputs": [
            {**tensors[0], "data": None, "parameters": {"binary_data_size": len(raw)}},
            {**tensors[1], "data": None, "parameters": {"binary_data_size": 16}},
        ],
        "parameters": parameters,
    }
    head = json.dumps(header).encode()
    binary = client.post(
        "/v2/models/gru/infer",
        content=head + raw + lengths_raw,
        headers={"Inference-Header-Content-Length": str(len(head))},
    )
    assert binary.status_code == 200, binary.text
    assert {o["name"]: o["data"] for o in binary.json()["outputs"]} == outputs


@pytest.mark.parametrize(
    ("ids", "where"),
    [
        ([[1, 2, 3, 4, 5, 6], [1, 2, 3.7, 4, 5, 6]], "inputs[1][2]"),
        ([[0, 1, 2, 3, 4, 50]], "inputs[0][5]"),
    ],
)
def test_bad_token_ids_are_4xx_naming_row_and_position(
    tmp_path: Path, client_for: ClientFor, ids: list[list[float]], where: str
) -> None:
    write_sequence_model(tmp_path, "TokenBag", name="bag")
    client = client_for(tmp_path)
    v1 = client.post("/v1/models/bag/predict", json={"inputs": ids})
    assert v1.status_code == 422 and v1.json()["error"].startswith(f"{where}: "), v1.text
    flat = [v for row in ids for v in row]
    tensor = {"name": "input", "datatype": "FP64", "shape": [len(ids), 6], "data": flat}
    v2 = client.post("/v2/models/bag/infer", json={"inputs": [tensor]})
    assert v2.status_code == 400 and v2.json()["error"].startswith(f"{where}: "), v2.text


@pytest.mark.parametrize("cls", ["TokenBag", "MeanPooled"])
def test_check_model_samples_the_kinds_probe(
    tmp_path: Path, cls: str, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = write_sequence_model(tmp_path, cls)
    arguments = ["check-model", str(folder), "--rows", "4", "--runs", "2", "--n-samples", "16"]
    assert main(arguments) == 0
    summary = load_model_folder(folder).input_kind.describe().summary
    assert summary in capsys.readouterr().out


def test_token_ids_alone_or_fused_give_the_same_bits(tmp_path: Path) -> None:
    model = load_model_folder(write_sequence_model(tmp_path, "TokenBag"))
    ids = model.rows_to_tensor([[1, 2, 3, 4, 5, 6], [7, 8, 9, 10, 11, 12]], 2)
    assert ids.dtype == torch.int64
    other = model.rows_to_tensor([[40, 41, 42, 43, 44, 45]] * 3, 3)
    sampler = model.predictor.sampler
    alone = sampler.sample(ids, 40, seed=5)
    assert torch.equal(
        sampler.sample_jobs([SampleJob(other, 24, 2), SampleJob(ids, 40, 5)])[1], alone
    )


def test_a_torchscript_token_model_gets_integer_ids(tmp_path: Path) -> None:
    scripted = {"architecture": {"torchscript": "model.pt"}, "weights": {}}
    folder = write_sequence_model(tmp_path, "TokenBag", name="scripted", card=scripted)
    torch.jit.save(torch.jit.script(reference_model("TokenBag")), str(folder / "model.pt"))
    model = load_model_folder(folder)
    ids = torch.randint(0, VOCAB, (3, 6), generator=torch.Generator().manual_seed(2))
    reference = _reference(reference_model("TokenBag"), ids)
    assert_moments_match(_served(model, ids.tolist()), reference)
