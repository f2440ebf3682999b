"""Train the bundled text demo: a tiny BERT-style classifier of customer-support tickets.

Everything is generated here, deterministically: a templated corpus of short support tickets
in four classes (billing, delivery, technical, account), a WordPiece vocabulary of its words
(built with `tokenizers`), and a 2-layer BERT (hidden 64) trained from scratch with
`transformers`. Written as a Hugging Face `save_pretrained` folder plus `model.yaml` under
`--out` (default `models/ticket-triage`). It is a toy: it knows the templates' vocabulary only,
so text unlike its training data is where its MC-dropout passes should disagree (they do not
always: see docs/text.md).

Usage: `python scripts/train_text_demo.py [--out DIR] [--epochs N]` (about a minute on 2 cores).
"""

from __future__ import annotations

import argparse
import random
import string
import time
from pathlib import Path
from typing import Any

import torch
import yaml

SEED = 0
LABELS = ["billing", "delivery", "technical", "account"]
OPENERS = ["", "hi,", "hello,", "please help:", "urgent:", "good morning,", "hey team,"]
CLOSERS = ["", "thanks", "thank you", "please advise", "can you check", "what should i do"]
TOPICS: dict[str, dict[str, list[str]]] = {
    "billing": {
        "thing": ["invoice", "bill", "refund", "payment", "subscription fee", "receipt", "charge"],
        "problem": [
            "i was charged twice for my {thing}",
            "my {thing} shows the wrong amount",
            "i still have not received the {thing} i was promised",
            "the {thing} on my card looks too high",
            "why did the {thing} go up this month",
            "i want a copy of my {thing} for march",
        ],
    },
    "delivery": {
        "thing": ["parcel", "package", "order", "shipment", "delivery", "courier", "box"],
        "problem": [
            "my {thing} has not arrived yet",
            "the {thing} was left at the wrong address",
            "tracking says the {thing} is lost",
            "the {thing} arrived damaged and wet",
            "the {thing} is three days late",
            "can i change the address of my {thing}",
        ],
    },
    "technical": {
        "thing": ["app", "website", "router", "login page", "update", "printer", "software"],
        "problem": [
            "the {thing} crashes every time i open it",
            "the {thing} shows an error code after the update",
            "the {thing} is very slow since yesterday",
            "i cannot connect the {thing} to wifi",
            "the {thing} freezes on the loading screen",
            "the {thing} keeps restarting",
        ],
    },
    "account": {
        "thing": ["password", "account", "email address", "username", "profile", "two factor code"],
        "problem": [
            "i forgot my {thing} and cannot sign in",
            "please delete my {thing}",
            "someone else changed my {thing}",
            "how do i update my {thing}",
            "my {thing} is locked after too many attempts",
            "i never received the {thing} reset email",
        ],
    },
}


def corpus(per_class: int, seed: int = SEED) -> list[tuple[str, int]]:
    """(ticket, label) pairs from the templates, shuffled; the same for the same seed."""
    rng = random.Random(seed)
    rows = []
    for label, name in enumerate(LABELS):
        topic = TOPICS[name]
        for _ in range(per_class):
            problem = rng.choice(topic["problem"]).format(thing=rng.choice(topic["thing"]))
            words = [rng.choice(OPENERS), problem, rng.choice(CLOSERS)]
            rows.append((" ".join(w for w in words if w), label))
    rng.shuffle(rows)
    return rows


def tokenizer_for(texts: list[str]) -> Any:
    """A fast BERT-style WordPiece tokenizer whose vocabulary is every word of ``texts`` plus
    single letters and digits (word-start and ``##`` continuation pieces, so unseen words split
    into letters rather than vanish into [UNK]), ids in sorted order: the same on every run
    (``tokenizers``' WordPiece trainer numbers tokens in hash order)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    normalizer = normalizers.BertNormalizer(lowercase=True)
    splitter = pre_tokenizers.BertPreTokenizer()
    words = {
        word
        for text in texts
        for word, _ in splitter.pre_tokenize_str(normalizer.normalize_str(text))
    }
    characters = string.ascii_lowercase + string.digits
    pieces = sorted(words | set(characters) | {f"##{c}" for c in characters})
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = {token: index for index, token in enumerate(specials + pieces)}
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizer
    tokenizer.pre_tokenizer = splitter
    return bert_fast_tokenizer(tokenizer)


def bert_fast_tokenizer(tokenizer: Any) -> Any:
    """A ``tokenizers`` WordPiece tokenizer with [PAD] [UNK] [CLS] [SEP] [MASK] in its
    vocabulary -> transformers' fast tokenizer with BERT's [CLS] A [SEP] (B [SEP]) template."""
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    return PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tokenizer,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=64,
    )


def build_model(vocab_size: int) -> Any:
    """A 2-layer BERT, hidden 64, with dropout 0.1 everywhere (attention included)."""
    import transformers

    labels: dict[str, Any] = {
        "num_labels": len(LABELS),
        "id2label": dict(enumerate(LABELS)),
        "label2id": {name: i for i, name in enumerate(LABELS)},
    }
    config = transformers.BertConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
        max_position_embeddings=64,
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
        classifier_dropout=0.2,
        **labels,
    )
    return transformers.BertForSequenceClassification(config)


def train(model: Any, tokenizer: Any, rows: list[tuple[str, int]], epochs: int) -> None:
    """AdamW on shuffled mini-batches of 32, dropout on (train mode)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.01)
    generator = torch.Generator().manual_seed(SEED)
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(len(rows), generator=generator).tolist()
        total = 0.0
        for start in range(0, len(order), 32):
            batch = [rows[i] for i in order[start : start + 32]]
            encoded = tokenizer([t for t, _ in batch], padding=True, return_tensors="pt")
            labels = torch.tensor([label for _, label in batch])
            loss = model(**encoded, labels=labels).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(batch)
        print(f"epoch {epoch + 1}: loss {total / len(rows):.4f}", flush=True)
    model.eval()


def accuracy(model: Any, tokenizer: Any, rows: list[tuple[str, int]]) -> float:
    """Share of ``rows`` classified correctly by the deterministic (eval) model."""
    encoded = tokenizer([t for t, _ in rows], padding=True, return_tensors="pt")
    with torch.inference_mode():
        predicted = model(**encoded).logits.argmax(-1)
    return float((predicted == torch.tensor([label for _, label in rows])).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("models/ticket-triage"))
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    started = time.perf_counter()
    torch.manual_seed(SEED)
    torch.set_num_threads(1)  # the same float reductions on every machine
    rows = corpus(per_class=500)
    held_out = corpus(per_class=50, seed=SEED + 1)
    tokenizer = tokenizer_for([text for text, _ in rows])
    model = build_model(len(tokenizer))
    train(model, tokenizer, rows, args.epochs)
    test_accuracy = accuracy(model, tokenizer, held_out)
    args.out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(args.out)
    tokenizer.save_pretrained(args.out)
    card = {
        "name": "ticket-triage",
        "version": "1",
        "task": "classification",
        "description": (
            "Toy demo: a 2-layer BERT (hidden 64) trained from scratch on templated support "
            "tickets (billing, delivery, technical, account). Not a real triage model."
        ),
        "input": {"type": "text", "max_length": 64, "max_characters": 2000},
        "architecture": {"huggingface": "."},
        "n_samples": {"default": 50, "max": 500},
        "mc_dropout": "all",
        "training": {
            "script": "scripts/train_text_demo.py",
            "corpus": "2,000 generated tickets (500 per class), seed 0",
            "held_out_accuracy": round(test_accuracy, 4),
            "n_held_out": len(held_out),
        },
    }
    (args.out / "model.yaml").write_text(yaml.safe_dump(card, sort_keys=False))
    print(
        f"held-out accuracy {test_accuracy:.4f}; wrote {args.out} in "
        f"{time.perf_counter() - started:.0f}s"
    )


if __name__ == "__main__":
    main()
