"""A Hugging Face text classifier folder -> a network on packed token rows (see
:mod:`app.registry.text`), every dropout sampled, attention included, or only the head."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, cast

from app.engine.dropout import DropoutLayer, find_dropout_layers
from app.engine.selection import select_dropout
from app.errors import ModelLoadError
from app.inputs.text import TextKind
from app.registry.card import ModelCard
from app.registry.card_inputs import InputSpec
from app.registry.hf_text_folded import folded_split
from app.registry.huggingface import (
    HFArchitecture,
    PretrainedClassifier,
    attention_sites,
    config_labels,
    head_sites,
    head_split,
    hf_folder,
    load_pretrained,
    sampling_split,
    shared_sites,
)
from app.registry.network import Network, describe_sites
from app.registry.served import LoadOptions
from app.registry.text import load_encoder

logger = logging.getLogger(__name__)

PROBE_ROWS = 2


def load_text_classifier(card: ModelCard, folder: Path, options: LoadOptions) -> Network:
    """Model, tokenizer and dropout sites of the card's Hugging Face folder."""
    spec = card.input
    assert card.architecture.huggingface is not None and isinstance(spec, InputSpec)
    path = hf_folder(folder, card.architecture.huggingface)
    model, architecture = load_pretrained(path)
    config: Any = model.config
    positions = int(config.max_position_embeddings)
    if config.model_type == "roberta":  # positions start after the padding index
        positions -= int(config.pad_token_id) + 1
    card = card.model_copy(update={"task": folder_task(card, config, architecture, path)})
    words = card.task == "token_classification"
    text = load_encoder(path, spec.max_length, spec.max_characters, positions, words)
    if card.labels is None:
        card = card.model_copy(update={"labels": config_labels(config)})
    classifier = PretrainedClassifier(model, architecture).eval()
    classifier.to(options.device, options.dtype)
    kind = TextKind(text)
    found = find_dropout_layers(model)
    head = head_sites(model, architecture)
    layers = select_dropout(
        _samplable(found, model, architecture, card),
        card.mc_dropout,
        head,
        card.name,
        card.dropout_share,
    )
    attention = attention_sites(model)
    if not attention:
        raise ModelLoadError(f"{path}: no attention dropout module found to sample")
    if architecture.attention_function and not any(layer.name in attention for layer in layers):
        cast(Any, model).set_attn_implementation(
            "sdpa"
        )  # attention dropout not sampled: the fast kernel
    split = sampling_split(classifier, layers, head, lambda: head_split(classifier))
    if not split.prefix_fraction and not words:  # the whole model per sample: fold it
        split = folded_split(model, classifier.arguments, layers) or split
    return Network(
        card=card,
        module=classifier,
        module_prefix="model.",
        layers=layers,
        sites=describe_sites(found, layers, attention),
        split=split,
        probe=kind.probe(PROBE_ROWS).to(options.device),
        input_kind=kind,
    )


def folder_task(card: ModelCard, config: Any, architecture: HFArchitecture, path: Path) -> str:
    """The task the folder's model serves: token classification from a
    ``*ForTokenClassification`` class, multi-label from ``problem_type:
    multi_label_classification`` (sigmoid per label) or a ``multilabel`` card section, else
    the card's. A card naming another task than the
    folder's is refused."""
    task = card.task
    if architecture.task == "token_classification":
        task = "token_classification"
    elif card.multilabel is not None or config.problem_type == "multi_label_classification":
        task = "multilabel"
    if card.task not in ("classification", task):
        raise ModelLoadError(
            f"model '{card.name}': the card says task {card.task}, but {path} holds a {task} model"
        )
    return task


def _samplable(
    found: list[DropoutLayer], model: Any, architecture: HFArchitecture, card: ModelCard
) -> list[DropoutLayer]:
    """The dropout layers a folded pass can sample: all but those on a tensor every row shares
    (DeBERTa-v2's dropout on its relative-position table has no per-sample copy to mask; it
    stays off, as in eval mode, and the listing shows it unsampled)."""
    shared = shared_sites(model, architecture)
    named = shared & set(card.mc_dropout) if isinstance(card.mc_dropout, list) else set()
    if named:
        raise ModelLoadError(
            f"model '{card.name}': mc_dropout names {', '.join(sorted(named))}, dropout on a "
            "tensor every row shares (the relative-position table), which mcdrop cannot sample "
            "per pass"
        )
    off = sorted(layer.name for layer in found if layer.name in shared and layer.p > 0)
    if off:
        logger.info(
            "model '%s': %s not sampled (dropout on the relative-position table every row shares)",
            card.name,
            ", ".join(off),
        )
    return [layer for layer in found if layer.name not in shared]
