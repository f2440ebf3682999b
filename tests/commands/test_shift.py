"""``mcdrop calibrate --ood``: the card's shift section, served per request, for each sampler."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import yaml
from fastapi.testclient import TestClient
from safetensors.torch import load_file

from app.cli import main
from app.commands.tabular import write_csv
from app.engine.predictor import PredictionRequest
from app.engine.sampler import MCSampler
from app.engine.shift import mahalanobis_distance
from app.errors import ModelLoadError
from app.registry.loading import load_model_folder
from app.registry.torch_loader import sha256_of
from tests.support import metric_value

Factory = Callable[..., Path]


def _rows(path: Path, rows: int, seed: int, labelled: bool = True) -> torch.Tensor:
    """Two Gaussian classes (left around (-2, 0), right around (2, 0)) written as CSV."""
    generator = torch.Generator().manual_seed(seed)
    right = torch.rand(rows, generator=generator) > 0.5
    x = torch.randn(rows, 2, generator=generator) * 0.5
    x[:, 0] += torch.where(right, 2.0, -2.0)
    names = ["right" if r else "left" for r in right.tolist()]
    cells = [[*row, name] for row, name in zip(x.tolist(), names, strict=True)]
    write_csv(path, ["a", "b", "label"], cells if labelled else x.tolist())
    return x


def _calibrate(folder: Path, tmp_path: Path, *extra: str) -> int:
    _rows(tmp_path / "train.csv", 300, seed=0)
    _rows(tmp_path / "held.csv", 200, seed=1)
    argv = ["calibrate", str(folder), "--ood", "--in-data", str(tmp_path / "train.csv")]
    return main([*argv, "--held-out", str(tmp_path / "held.csv"), "--target", "label", *extra])


def test_section_file_and_served_score_match_the_prefix_features(
    model_factory: Factory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = model_factory()
    assert _calibrate(folder, tmp_path) == 0
    assert "shift detector on prefix features (4 values" in capsys.readouterr().out
    section = yaml.safe_load((folder / "model.yaml").read_text())["shift"]
    assert section["source"] == "prefix" and section["rows"] == 300
    assert section["held_out_rows"] == 200 and section["false_alarm_rate"] == 0.05
    assert abs(section["held_out_false_alarms"] - 0.05) <= 0.01
    assert section["sha256"] == sha256_of(folder / "shift.safetensors")
    tensors = load_file(str(folder / "shift.safetensors"))
    assert tensors["means"].shape == (2, 4) and tensors["precision"].shape == (4, 4)
    model = load_model_folder(folder)
    x = torch.tensor([[2.0, 0.0], [-2.0, 0.1], [30.0, -20.0]])
    prediction = model.predictor.predict(PredictionRequest(x, 20, 0.9, seed=0))
    assert prediction.shift is not None and prediction.abstain is not None
    with torch.inference_mode():  # the prefix of TinyNet is its first Linear
        features = model.module.get_submodule("inp")(x).double()
    expected = mahalanobis_distance(features, tensors["means"], tensors["precision"])
    assert torch.allclose(prediction.shift.score, expected)
    assert prediction.shift.flag.tolist() == [False, False, True]
    assert prediction.abstain.tolist() == [False, False, True]


def test_fused_neighbours_leave_a_request_s_shift_alone(
    model_factory: Factory, tmp_path: Path
) -> None:
    folder = model_factory()
    assert _calibrate(folder, tmp_path) == 0
    predictor = load_model_folder(folder).predictor
    mine = PredictionRequest(torch.tensor([[1.5, 0.2], [-1.0, 0.3]]), 20, 0.9, seed=4)
    other = PredictionRequest(torch.randn(37, 2) * 50, 20, 0.9, seed=5)
    alone = predictor.predict(mine)
    fused = predictor.predict_many([other, mine, other])[1]
    assert alone.shift is not None and fused.shift is not None
    assert torch.equal(alone.shift.score, fused.shift.score)
    assert torch.equal(alone.shift.flag, fused.shift.flag)
    # the score comes from the sampling run's own prefix pass: no second one
    calls: list[int] = []
    model = load_model_folder(folder)
    sampler = model.predictor.sampler
    assert isinstance(sampler, MCSampler)
    prefix = sampler.split.prefix

    def counted(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        calls.append(1)
        return prefix(x)

    sampler.split = dataclasses.replace(sampler.split, prefix=counted)
    again = model.predictor.predict(mine)
    assert len(calls) == 1 and again.shift is not None
    assert torch.equal(again.shift.score, alone.shift.score)
    features = model.predictor.sampler.features(mine.inputs)  # the same bits taken apart
    assert features is not None and torch.equal(
        model.predictor.shift_of(mine.inputs, features).score,  # type: ignore[union-attr]
        alone.shift.score,
    )


def test_served_rows_metadata_and_metrics(
    model_factory: Factory, tmp_path: Path, client_for: Callable[..., TestClient]
) -> None:
    folder = model_factory()
    assert _calibrate(folder, tmp_path) == 0
    client = client_for(folder.parent)
    body = {"inputs": [[2.0, 0.0], [40.0, 40.0]], "n_samples": 10, "seed": 0}
    answer = client.post("/v1/models/tiny/predict", json=body)
    assert answer.status_code == 200, answer.text
    rows = answer.json()["predictions"]
    assert [row["shift_flag"] for row in rows] == [False, True]
    assert rows[1]["shift_score"] > rows[0]["shift_score"] and rows[1]["abstain"] is True
    tensor = {"name": "input", "shape": [2, 2], "datatype": "FP32", "data": [2, 0, 40, 40]}
    body = {"inputs": [tensor], "parameters": {"n_samples": 10, "seed": 0}}
    v2 = client.post("/v2/models/tiny/infer", json=body).json()["outputs"]
    by_name = {output["name"]: output["data"] for output in v2}
    assert by_name["shift_flag"] == [False, True]
    assert by_name["shift_score"] == pytest.approx([r["shift_score"] for r in rows], rel=1e-6)
    info = client.get("/v1/models/tiny").json()
    assert info["shift_features"].startswith("calibrated on prefix features")
    text = client.get("/metrics").text
    assert metric_value(text, "mcdrop_shift_flags_total", {"model": "tiny"}) == 2.0  # v1, v2
    assert metric_value(text, "mcdrop_shift_score_count", {"model": "tiny"}) == 4.0


def test_torchscript_has_no_prefix_and_says_so(model_factory: Factory, tmp_path: Path) -> None:
    folder = model_factory()
    loaded = load_model_folder(folder)
    loaded.predictor.sampler.close()
    torch.jit.save(torch.jit.script(loaded.module), str(folder / "model.ts"))
    document = yaml.safe_load((folder / "model.yaml").read_text())
    document.update(architecture={"torchscript": "model.ts"}, weights={})
    (folder / "model.yaml").write_text(yaml.safe_dump(document))
    assert _calibrate(folder, tmp_path) == 0
    section = yaml.safe_load((folder / "model.yaml").read_text())["shift"]
    assert section["source"] == "input"
    assert "no deterministic prefix" in section["source_note"]
    model = load_model_folder(folder)
    far = model.predictor.predict(PredictionRequest(torch.tensor([[9.0, 9.0]]), 20, 0.9, seed=0))
    assert far.shift is not None and far.shift.flag.tolist() == [True]


def test_hugging_face_head_split_gives_prefix_features(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    from tests.hf_models import write_text_model

    head = load_model_folder(write_text_model(tmp_path, card={"mc_dropout": "head"}))
    inputs = head.rows_to_tensor(["the staff were kind", "late again"], max_rows=4)
    features = head.predictor.sampler.features(inputs)
    assert features is not None and features.shape[0] == 2 and features.dtype == torch.float64
    whole = load_model_folder(write_text_model(tmp_path / "all", name="all-sites"))
    assert whole.predictor.sampler.features(inputs) is None  # no prefix: said at calibrate
    from app.commands.shift import feature_source
    from app.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="no deterministic prefix"):
        feature_source(whole, inputs)


def test_a_corrupt_or_mismatched_shift_file_fails_the_load(
    model_factory: Factory, tmp_path: Path
) -> None:
    folder = model_factory()
    assert _calibrate(folder, tmp_path) == 0
    (folder / "shift.safetensors").write_bytes(b"not tensors")
    with pytest.raises(ModelLoadError, match="sha256 mismatch"):
        load_model_folder(folder)
    assert _calibrate(folder, tmp_path) == 0
    document = yaml.safe_load((folder / "model.yaml").read_text())
    tensors = load_file(str(folder / "shift.safetensors"))
    from safetensors.torch import save_file

    save_file(
        {"means": tensors["means"][:, :3].contiguous(), "precision": torch.eye(3)},
        str(folder / "shift.safetensors"),
    )
    document["shift"]["sha256"] = sha256_of(folder / "shift.safetensors")
    (folder / "model.yaml").write_text(yaml.safe_dump(document))
    with pytest.raises(ModelLoadError, match="3 features, the model gives 4"):
        load_model_folder(folder)


def test_bad_requests_are_refused(
    model_factory: Factory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = model_factory()
    _rows(tmp_path / "train.csv", 50, seed=0)
    argv = ["calibrate", str(folder), "--ood", "--in-data", str(tmp_path / "train.csv")]
    assert main(argv) == 2
    assert "--ood needs --held-out" in capsys.readouterr().err
    assert main([*argv, "--held-out", str(tmp_path / "train.csv"), "--false-alarm", "1"]) == 2
    assert "--false-alarm must be in [0, 1)" in capsys.readouterr().err
    assert "shift" not in yaml.safe_load((folder / "model.yaml").read_text())


def test_hugging_face_image_head_split_gives_pooled_features(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    from tests.hf_images import write_hf_image_model

    folder = write_hf_image_model(tmp_path, "h", "efficientnet", card={"mc_dropout": "head"})
    model = load_model_folder(folder)
    pixels = torch.randn(2, *model.card.input.shape)
    features = model.predictor.sampler.features(pixels)
    assert features is not None and features.shape[0] == 2
    from app.registry.shift_file import shift_features_note

    assert shift_features_note(model) == "prefix: the activation entering the first dropout"


def test_a_hugging_face_text_model_is_calibrated_on_its_prefix(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    from tests.hf_models import write_text_model

    folder = write_text_model(tmp_path, card={"mc_dropout": "head"})
    labels = load_model_folder(folder).card.labels
    assert labels is not None
    words = ["kind", "late", "good", "rude", "fast", "slow", "warm", "cold"]
    for name, seed in (("train", 0), ("held", 1)):
        generator = torch.Generator().manual_seed(seed)
        picks = torch.randint(0, len(words), (40, 3), generator=generator).tolist()
        rows = [[" ".join(words[i] for i in p), labels[p[0] % len(labels)]] for p in picks]
        write_csv(tmp_path / f"{name}.csv", ["text", "label"], rows)
    argv = ["calibrate", str(folder), "--ood", "--in-data", str(tmp_path / "train.csv")]
    assert main([*argv, "--held-out", str(tmp_path / "held.csv"), "--target", "label"]) == 0
    section = yaml.safe_load((folder / "model.yaml").read_text())["shift"]
    assert section["source"] == "prefix" and "Hugging Face split" in section["source_note"]
    model = load_model_folder(folder)
    inputs = model.rows_to_tensor(["kind late good", "zebra quantum xylophone"], max_rows=2)
    prediction = model.predictor.predict(PredictionRequest(inputs, 8, 0.9, seed=0))
    assert prediction.shift is not None and prediction.shift.score.shape == (2,)


def test_evaluate_puts_the_shift_score_beside_the_mc_scores(
    model_factory: Factory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = model_factory(card={"target": "label"})
    x = _rows(tmp_path / "test.csv", 100, seed=2)
    far = [[*(row * 3 + 10).tolist(), "left"] for row in x]
    write_csv(tmp_path / "far.csv", ["a", "b", "label"], far)
    argv = ["evaluate", str(folder), "--data", str(tmp_path / "test.csv")]
    argv += ["--ood-data", str(tmp_path / "far.csv"), "--n-samples", "20"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "no shift section in the card" in out and "mutual_information" in out
    assert _calibrate(folder, tmp_path) == 0
    capsys.readouterr()
    assert main([*argv, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)["ood"]
    assert list(report["auroc"]) == [
        "shift_score",
        "mutual_information",
        "predictive_entropy",
        "1 - confidence",
    ]
    assert report["auroc"]["shift_score"] > 0.99
    assert report["flagged"]["shift_flag"]["ood"] == 1.0
