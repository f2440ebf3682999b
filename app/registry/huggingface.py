"""Hugging Face ``save_pretrained`` folders: offline loading, the supported architectures, and
the explicit split at the base model that ``mc_dropout: head`` needs.

``transformers`` is an optional extra (``pip install "mcdrop[text]"``); a folder that needs it
fails to load with that instruction and the other models keep serving. Loading is offline
(``local_files_only``), never runs code from the folder (``trust_remote_code=False``) and reads
weights only from safetensors.

Recent ``transformers`` apply attention-probability dropout functionally (``dropout=0.0 if not
self.training else p`` handed to the attention function), so switching or hooking dropout
modules leaves it off. Models here run the ``mcdrop`` attention function (eager attention that
calls the attention module's own ``dropout`` module on the probabilities), so the sampler's
seeded masks reach attention dropout like every other dropout module. DeBERTa-v2 calls its
attention ``dropout`` module itself. A model whose sampled sites include no attention dropout
(``mc_dropout: head``) goes back to transformers' SDPA attention, the faster kernel.

Image classifiers can join: a row in ``SUPPORTED`` (base model, crossing value, head) and a
wrapper like :class:`PretrainedClassifier` for their inputs.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import torch
from torch import Tensor, nn
from torch.nn import functional

from app.engine.compiled import DropoutApplier
from app.engine.dropout import DropoutLayer
from app.engine.positions import (
    cut_from,
    first_query_only,
    keep_first_positions,
    keep_first_query,
)
from app.engine.prefix import ModelSplit, whole_model_split
from app.errors import ModelLoadError

Arch = TypeVar("Arch")

EXTRA_HINT = 'pip install "mcdrop[text]"'
ATTENTION = "mcdrop"
"""Name of mcdrop's attention function in transformers' attention registry."""


@dataclass(frozen=True)
class HFArchitecture:
    """How mcdrop runs one transformers class: its base model and the head after it."""

    base: str
    """Attribute holding the base model (encoder); dropout outside it is the head's."""
    crossing: Callable[[Any], Tensor]
    """Base model output -> the per-row value (B, ...) the head reads."""
    head: Callable[[Any, Tensor], Tensor]
    """(whole model, crossing value) -> logits (B, C): the model's forward after the base."""
    token_types: bool = False
    """Whether the base model takes ``token_type_ids``."""
    attention_function: bool = True
    """Whether attention runs through transformers' attention registry (else the model calls
    its attention dropout module itself)."""
    shared_dropout: tuple[str, ...] = ()
    """Names (last part) of dropout modules applied to a tensor every row shares, which a
    folded pass cannot give one mask per sample: listed, never sampled."""
    last_layer: Callable[[Any], tuple[nn.Module, nn.Module] | None] = lambda model: None
    """(whole model) -> (last encoder layer, the module inside it after the attention where
    the head's first token can be cut out), or None: see :mod:`app.engine.positions`."""
    task: str = "classification"
    """The task its logits serve: ``classification`` (B, C) or ``token_classification``
    (B, L, C), one row of logits per token."""
    last_queries: Callable[[Any], tuple[nn.Module, nn.Module] | None] = lambda layer: None
    """(that last layer) -> (its module calling the attention function, the query projection
    inside it): with a cut, its attention scores the first token's query only."""


def _first_token(output: Any) -> Tensor:
    hidden: Tensor = output[0]
    return hidden[:, :1]


def _after_attention(base: Any) -> tuple[nn.Module, nn.Module] | None:
    """BERT, RoBERTa and DeBERTa-v2 layers: cut at the attention's output block (dense,
    dropout, residual norm), whose two inputs are the attention values and the layer input."""
    layers = base.encoder.layer
    if len(layers) == 1 and getattr(base.encoder, "conv", None) is not None:
        return None  # DeBERTa's convolution after the first layer reads every position
    return layers[-1], layers[-1].attention.output


def _self_attention(layer: Any) -> tuple[nn.Module, nn.Module]:
    """BERT and RoBERTa layers: the self-attention module and its query projection."""
    return layer.attention.self, layer.attention.self.query


def _distilbert_last(model: Any) -> tuple[nn.Module, nn.Module]:
    """DistilBERT's last block: cut at the attention's residual norm (its input is the sum)."""
    layer = model.distilbert.transformer.layer[-1]
    return layer, layer.sa_layer_norm


SUPPORTED: dict[str, HFArchitecture] = {
    "BertForSequenceClassification": HFArchitecture(
        base="bert",
        crossing=lambda output: output.pooler_output,
        head=lambda model, pooled: model.classifier(model.dropout(pooled)),
        token_types=True,
        last_layer=lambda model: _after_attention(model.bert),
        last_queries=_self_attention,
    ),
    "DistilBertForSequenceClassification": HFArchitecture(
        base="distilbert",
        crossing=_first_token,
        head=lambda model, first: model.classifier(
            model.dropout(torch.relu(model.pre_classifier(first[:, 0])))
        ),
        last_layer=_distilbert_last,
        last_queries=lambda layer: (layer.attention, layer.attention.q_lin),
    ),
    "RobertaForSequenceClassification": HFArchitecture(
        base="roberta",
        crossing=_first_token,
        head=lambda model, first: model.classifier(first),
        last_layer=lambda model: _after_attention(model.roberta),
        last_queries=_self_attention,
    ),
    "DebertaV2ForSequenceClassification": HFArchitecture(
        base="deberta",
        crossing=_first_token,
        head=lambda model, first: model.classifier(model.dropout(model.pooler(first))),
        token_types=True,
        attention_function=False,
        shared_dropout=("pos_dropout",),  # on the relative-position table, not on a row
        last_layer=lambda model: _after_attention(model.deberta),
    ),
}
"""transformers class name -> how to run it. The image helper's classes join this table."""


def _token_head(model: Any, hidden: Tensor) -> Tensor:
    """Every ``*ForTokenClassification`` here: dropout then a linear layer on each token."""
    logits: Tensor = model.classifier(model.dropout(hidden))
    return logits


def _hidden(output: Any) -> Tensor:
    hidden: Tensor = output[0]
    return hidden


def _token_classifier(base: str, **options: Any) -> HFArchitecture:
    return HFArchitecture(
        base=base, crossing=_hidden, head=_token_head, task="token_classification", **options
    )


SUPPORTED.update(
    {
        "BertForTokenClassification": _token_classifier("bert", token_types=True),
        "DistilBertForTokenClassification": _token_classifier("distilbert"),
        "RobertaForTokenClassification": _token_classifier("roberta"),
        "DebertaV2ForTokenClassification": _token_classifier(
            "deberta", token_types=True, attention_function=False, shared_dropout=("pos_dropout",)
        ),
    }
)


def require_transformers() -> ModuleType:
    """The transformers module, or ModelLoadError saying how to install it."""
    try:
        return importlib.import_module("transformers")
    except ImportError as exc:
        raise ModelLoadError(
            f"this model needs the transformers package, which is not installed: {EXTRA_HINT}"
        ) from exc


def hf_folder(folder: Path, relative: str) -> Path:
    """The Hugging Face folder named by ``architecture.huggingface`` (inside the model folder)."""
    path = (folder / relative).resolve()
    if not path.is_relative_to(folder.resolve()):
        raise ModelLoadError(f"{folder}: architecture.huggingface '{relative}' is outside it")
    if not (path / "config.json").is_file():
        raise ModelLoadError(f"{path}: no config.json (a save_pretrained folder is expected)")
    if not any(path.glob("*.safetensors")):
        raise ModelLoadError(f"{path}: no .safetensors weights (mcdrop loads no pickled weights)")
    return path


def load_pretrained(path: Path) -> tuple[nn.Module, HFArchitecture]:
    """The model of a save_pretrained folder, in eval mode, with mcdrop's attention function."""
    model, architecture = from_pretrained(
        require_transformers(), path, SUPPORTED, lambda arch: arch.attention_function
    )
    last = architecture.last_layer(model)
    if last is not None:  # the head reads the first token: the last layer computes only it
        keep_first_positions(*last)
        queries = architecture.last_queries(last[0])
        if queries is not None and architecture.attention_function:
            keep_first_query(*queries)
    return model.eval(), architecture


def from_pretrained(
    transformers: ModuleType,
    path: Path,
    supported: Mapping[str, Arch],
    uses_attention: Callable[[Arch], bool],
    *,
    kind: str = "",
    check: Callable[[list[str]], None] | None = None,
) -> tuple[nn.Module, Arch]:
    """The model of the folder whose config.json declares a class of ``supported``, loaded
    offline, without the folder's code, from safetensors only; mcdrop's attention function when
    ``uses_attention(architecture)``. ``check`` may refuse the declared classes first; ``kind``
    qualifies the "not supported" error (" for images")."""
    config = transformers.AutoConfig.from_pretrained(
        path, local_files_only=True, trust_remote_code=False
    )
    declared = list(getattr(config, "architectures", None) or [])
    if check is not None:
        check(declared)
    name = next((n for n in declared if n in supported), None)
    if name is None:
        raise ModelLoadError(
            f"{path}: architecture {', '.join(declared) or '(none in config.json)'} is not "
            f"supported{kind}; mcdrop serves {', '.join(supported)}"
        )
    architecture = supported[name]
    options: dict[str, Any] = {}
    if uses_attention(architecture):
        register_attention(transformers)
        options["attn_implementation"] = ATTENTION
    model: nn.Module = getattr(transformers, name).from_pretrained(
        path, local_files_only=True, trust_remote_code=False, use_safetensors=True, **options
    )
    return model, architecture


def register_attention(transformers: ModuleType) -> None:
    """Make ``mcdrop`` a known attention implementation (eager masks), once per process."""
    transformers.AttentionInterface.register(ATTENTION, attention_with_dropout_module)
    masks = importlib.import_module("transformers.masking_utils")
    eager_mask = masks.ALL_MASK_ATTENTION_FUNCTIONS["eager"]
    masks.AttentionMaskInterface.register(ATTENTION, eager_mask)


def attention_with_dropout_module(
    module: nn.Module,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attention_mask: Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[Tensor, Tensor]:
    """Eager attention (B, heads, L, d) whose probability dropout is the attention module's own
    ``dropout`` module, so that it is an identity in eval mode and sampled under mcdrop. For a
    module cut to its first query (:func:`app.engine.positions.keep_first_query`) that query
    alone is scored, its dropout draws the masks of all L queries, and the output (B, 1, ...)
    is broadcast back to (B, L, ...) as a view."""
    dropout_module = getattr(module, "dropout", None)
    if not isinstance(dropout_module, nn.Dropout):
        raise RuntimeError(f"{type(module).__name__} has no nn.Dropout 'dropout' for attention")
    scale = scaling if scaling is not None else query.size(-1) ** -0.5
    length = query.shape[-2]
    if first_query_only(module):
        query = query[:, :, :1]
        if attention_mask is not None:
            attention_mask = attention_mask[..., :1, :]
    # the keys made contiguous and read transposed: cheaper than a transposing copy
    weights = torch.matmul(query, key.contiguous().transpose(2, 3)).mul_(scale)
    if attention_mask is not None:  # in place: no second (B, heads, L, L) block per step
        weights.add_(attention_mask)
    with cut_from(length):  # masks of every query, those of the first ones kept
        weights = dropout_module(functional.softmax(weights, dim=-1))
    output = torch.matmul(weights, value).transpose(1, 2).contiguous()
    if output.shape[1] < length:
        output = output.expand(output.shape[0], length, *output.shape[2:])
    return output, weights


def attention_sites(model: nn.Module) -> set[str]:
    """Names of the dropout modules applied to attention probabilities."""
    return {
        f"{name}.dropout"
        for name, module in model.named_modules()
        if "Attention" in type(module).__name__
        and isinstance(getattr(module, "dropout", None), nn.Dropout)
    }


def shared_sites(model: nn.Module, architecture: HFArchitecture) -> set[str]:
    """Names of the dropout modules on tensors every row shares (never sampled)."""
    return {
        name
        for name, module in model.named_modules()
        if isinstance(module, nn.Dropout) and name.rsplit(".", 1)[-1] in architecture.shared_dropout
    }


def head_sites(model: nn.Module, architecture: HFArchitecture) -> set[str]:
    """Names of the dropout modules outside the base model (the classification head's)."""
    return {
        name
        for name, module in model.named_modules()
        if isinstance(module, nn.Dropout) and not name.startswith(f"{architecture.base}.")
    }


def config_labels(config: Any) -> list[str]:
    """The labels a transformers config names (``id2label``), in class order."""
    return [str(config.id2label[i]) for i in range(int(config.num_labels))]


def sampling_split(
    classifier: nn.Module,
    layers: Sequence[DropoutLayer],
    head: Collection[str],
    head_split: Callable[[], ModelSplit],
) -> ModelSplit:
    """``head_split()`` when every sampled site is the head's (the base model then runs once
    per row), else the whole model for every sample."""
    if head and all(layer.name in head for layer in layers):
        return head_split()
    return whole_model_split(
        classifier, reason="Hugging Face model: every sample runs the whole model"
    )


class PretrainedClassifier(nn.Module):
    """A transformers sequence classifier on packed token rows.

    Input (B, 3, L) int64: token ids, attention mask, token type ids. Output (B, C) logits.
    """

    def __init__(self, model: nn.Module, architecture: HFArchitecture) -> None:
        super().__init__()
        self.model = model
        self.architecture = architecture

    def arguments(self, x: Tensor) -> dict[str, Tensor]:
        """Keyword arguments of the transformers forward for packed rows x (B, 3, L)."""
        arguments = {"input_ids": x[:, 0], "attention_mask": x[:, 1]}
        if self.architecture.token_types:
            arguments["token_type_ids"] = x[:, 2]
        return arguments

    def forward(self, x: Tensor) -> Tensor:
        logits: Tensor = self.model(**self.arguments(x)).logits
        return logits


def head_split(classifier: PretrainedClassifier) -> ModelSplit:
    """Base model once per row (prefix), the head per sample (suffix, hooked dropout)."""
    model, architecture = classifier.model, classifier.architecture
    base: nn.Module = getattr(model, architecture.base)

    def prefix(x: Tensor) -> tuple[Tensor, ...]:
        return (architecture.crossing(base(**classifier.arguments(x))),)

    def suffix(dropout: DropoutApplier, value: Tensor) -> Tensor:
        return architecture.head(model, value)

    total = sum(p.numel() for p in model.parameters())
    share = sum(p.numel() for p in base.parameters()) / max(total, 1)
    reason = f"Hugging Face split: {architecture.base} runs once per row, the head per sample"
    return ModelSplit(prefix, suffix, round(share, 4), reason, feature_index=0)
