"""The card's abstention and target fields, and writing cards back."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from app.errors import ModelLoadError
from app.registry.card import CARD_FILE, card_yaml, read_card, write_card
from tests.support import BUNDLED_MODELS

Factory = Callable[..., Path]
RULE = {
    "score": "predictive_entropy",
    "threshold": 0.4,
    "in_distribution_share": 0.95,
    "calibrated_on": "val.csv",
    "n_samples": 100,
}


def test_abstention_and_target_are_read(model_factory: Factory) -> None:
    card = read_card(model_factory(card={"abstention": RULE, "target": "digit"}))
    assert card.abstention is not None and card.abstention.threshold == 0.4
    assert card.abstention.score == "predictive_entropy" and card.target == "digit"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"score": "confidence"}, "score"),
        ({"threshold": -1.0}, "threshold"),
        ({"in_distribution_share": 1.5}, "in_distribution_share"),
        ({"extra": 1}, "extra"),
    ],
)
def test_bad_abstention_sections_are_refused(
    model_factory: Factory, change: dict[str, object], message: str
) -> None:
    with pytest.raises(ModelLoadError, match=message):
        read_card(model_factory(card={"abstention": {**RULE, **change}}))


def test_abstention_takes_the_tasks_own_scores(model_factory: Factory) -> None:
    with pytest.raises(ModelLoadError, match="a regression model; it takes no abstention"):
        read_card(model_factory(task="regression", card={"abstention": RULE}))
    image_score = {**RULE, "score": "mean_mutual_information"}
    with pytest.raises(ModelLoadError, match="it takes mutual_information, predictive_entropy"):
        read_card(model_factory(card={"abstention": image_score}))


@pytest.mark.parametrize("name", ["digits-mlp", "digits-cnn", "diabetes-mlp"])
def test_card_yaml_reproduces_the_bundled_cards(name: str) -> None:
    text = (BUNDLED_MODELS / name / CARD_FILE).read_text()
    assert card_yaml(yaml.safe_load(text)) == text


def test_card_yaml_puts_keys_in_field_order() -> None:
    document = {"training": {}, "abstention": RULE, "name": "m", "task": "classification"}
    assert list(yaml.safe_load(card_yaml(document))) == ["name", "task", "abstention", "training"]


def test_write_card_replaces_the_file_and_refuses_invalid_cards(model_factory: Factory) -> None:
    folder = model_factory()
    document = yaml.safe_load((folder / CARD_FILE).read_text())
    card = write_card(folder, {**document, "abstention": RULE})
    assert read_card(folder) == card and card.abstention is not None
    before = (folder / CARD_FILE).read_text()
    with pytest.raises(ModelLoadError, match="invalid card"):
        write_card(folder, {**document, "task": "ranking"})
    assert (folder / CARD_FILE).read_text() == before
    assert sorted(p.name for p in folder.iterdir()) == ["model.safetensors", "model.yaml", "net.py"]


def test_feature_names_and_value_range_are_read(model_factory: Factory) -> None:
    card = read_card(model_factory(card={"feature_names": ["a", "b"], "value_range": [0, 16]}))
    assert card.feature_names == ["a", "b"] and card.value_range == (0.0, 16.0)


@pytest.mark.parametrize(
    ("hints", "message"),
    [
        ({"feature_names": ["a", "b", "c"]}, "feature_names has 3 names, the input has 2 values"),
        ({"value_range": [1, 1]}, "value_range must be"),
        ({"value_range": [2, 1]}, "value_range must be"),
        ({"value_range": [0]}, "value_range"),
    ],
)
def test_bad_input_hints_are_refused(
    model_factory: Factory, hints: dict[str, object], message: str
) -> None:
    with pytest.raises(ModelLoadError, match=message):
        read_card(model_factory(card=hints))


def test_set_kinds_and_the_shift_section_are_checked(model_factory: Factory) -> None:
    lac = {"kind": "lac", "level": 0.9, "quantile": 0.2, "rows": 50, "class_quantiles": [0.1, 0.3]}
    card = read_card(model_factory(card={"conformal": lac}))
    assert card.conformal is not None and card.conformal.class_quantiles == [0.1, 0.3]
    residual = {"kind": "normalised_residual", "level": 0.9, "quantile": 1.0, "rows": 50}
    with pytest.raises(ModelLoadError, match="'lac' or 'aps' or 'raps'"):
        read_card(model_factory("bad", card={"conformal": residual}))
    shift = {"source": "prefix", "threshold": 3.0, "false_alarm_rate": 0.05, "rows": 10}
    with pytest.raises(ModelLoadError, match="'shift' applies to classification models only"):
        read_card(
            model_factory("line", task="regression", card={"shift": shift | {"held_out_rows": 5}})
        )
