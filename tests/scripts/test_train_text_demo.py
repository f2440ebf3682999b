"""The text demo: its generated corpus, its tokenizer, and the bundled model it trained."""

from __future__ import annotations

from collections import Counter

import torch

from app.engine.predictor import PredictionRequest
from app.engine.stats import ClassificationStats
from app.registry.loading import load_model_folder
from tests.support import BUNDLED_MODELS, load_script

demo = load_script("train_text_demo")


def test_corpus_is_balanced_and_the_same_for_the_same_seed() -> None:
    rows = demo.corpus(per_class=40)
    assert rows == demo.corpus(per_class=40)
    assert rows != demo.corpus(per_class=40, seed=1)
    assert Counter(label for _, label in rows) == {0: 40, 1: 40, 2: 40, 3: 40}


def test_tokenizer_ids_are_sorted_words_then_letters_the_same_every_time() -> None:
    texts = [text for text, _ in demo.corpus(per_class=5)]
    first, second = demo.tokenizer_for(texts), demo.tokenizer_for(list(reversed(texts)))
    assert first.get_vocab() == second.get_vocab()
    pieces = first("zebra")["input_ids"][1:-1]  # unseen word: letters, not [UNK]
    assert first.unk_token_id not in pieces and len(pieces) == 5


def test_bundled_demo_is_confident_in_domain_and_uncertain_far_from_it() -> None:
    model = load_model_folder(BUNDLED_MODELS / "ticket-triage")
    assert model.card.labels == ["billing", "delivery", "technical", "account"]
    texts = ["my parcel has not arrived yet, thanks", "der zug nach berlin hat leider verspätung"]
    inputs = model.rows_to_tensor(texts, max_rows=2)
    stats = model.predictor.predict(PredictionRequest(inputs, 100, 0.9, seed=0)).stats
    assert isinstance(stats, ClassificationStats)
    assert int(stats.predicted_class[0]) == 1 and float(stats.confidence[0]) > 0.9
    mi = stats.mutual_information
    assert float(mi[1]) > 10 * float(mi[0])
    assert torch.isfinite(stats.predictive_entropy).all()
