"""BERT and RoBERTa sequence classifiers sampled folded: their encoder written out for N samples.

The generic path runs the transformers model on the folded batch with its dropout modules
hooked. For these two classes (the most served text models) a folded split computes the same
numbers with less work per sample, which matters most where the matrix products run at the
core's peak and everything else is overhead (one thread: ``bench/text.py``):

- the embeddings (up to their dropout) run once per input row, in the prefix; the embedding
  dropout repeats them over samples while masking;
- attention runs per head on strided views of the projections (no transposing copies of
  queries, keys, values), the probability dropout is multiplied in place;
- the dropout after the attention output and after the feed-forward block are fused with their
  residual additions (``addcmul``);
- only the samples a request asked for are computed up to the last layer's attention: the
  sampler pads each piece to a multiple of ``ROW_ALIGN`` folded rows so that matrix products
  give every row the same bits, but a text row is ``L`` product rows, and with ``L`` a multiple
  of ``ROW_ALIGN`` (every length bucket but an odd ``max_length``) each piece's block is already
  aligned without the padding samples. From the cut on (the head reads the first token,
  :mod:`app.engine.positions`) one row is one product row, so the first positions are laid
  back out in the sampler's padded layout, and the last layer and the head run there with the
  sampler's own masking.

Masks are the sampler's, drawn as the module path draws them (the same streams, the full
sequence's masks kept to the first position after the cut), so a seeded request gets the
numbers of the module path up to float rounding, and the same bits alone, fused or chunked.
Anything else (DistilBERT, DeBERTa, a decoder, cross-attention, a chunked feed-forward, a
sampled site that is not a plain ``nn.Dropout``) keeps the module path.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import Tensor, nn
from torch.nn import functional

from app.engine.compiled import DropoutApplier
from app.engine.dropout import DropoutLayer, MaskKind
from app.engine.positions import cut_from
from app.engine.prefix import ModelSplit, Unfolded
from app.engine.sampler import ChunkDropout
from app.engine.sampling import ROW_ALIGN

Head = Callable[[Any, "_Sites", Tensor], Tensor]
"""(model, the run's sites, first positions (rows, 1, H)) -> logits (rows, C)."""


def _bert_head(model: Any, sites: _Sites, first: Tensor) -> Tensor:
    pooled = torch.tanh(model.bert.pooler.dense(first[:, 0]))
    logits: Tensor = model.classifier(sites.apply("dropout", pooled))
    return logits


def _roberta_head(model: Any, sites: _Sites, first: Tensor) -> Tensor:
    head = model.classifier  # RobertaClassificationHead: its dropout runs twice
    x = sites.apply("classifier.dropout", first[:, 0])
    x = sites.apply("classifier.dropout", torch.tanh(head.dense(x)))
    logits: Tensor = head.out_proj(x)
    return logits


FOLDED: dict[str, tuple[str, Head]] = {
    "BertForSequenceClassification": ("bert", _bert_head),
    "RobertaForSequenceClassification": ("roberta", _roberta_head),
}
"""transformers class -> (its base model attribute, its head after the first positions)."""


def folded_split(
    model: nn.Module,
    arguments: Callable[[Tensor], dict[str, Tensor]],
    layers: Sequence[DropoutLayer],
) -> ModelSplit | None:
    """The folded split of a BERT or RoBERTa sequence classifier sampling ``layers``, or None
    where the module path must stay (see the module docstring). ``arguments(x)`` are the
    transformers keyword arguments of packed rows x (B, 3, L)."""
    found = FOLDED.get(type(model).__name__)
    config: Any = getattr(model, "config", None)
    if found is None or config is None or not layers:
        return None
    if found[0] == "bert" and cast(Any, model).bert.pooler is None:
        return None
    if config.is_decoder or config.add_cross_attention or config.chunk_size_feed_forward:
        return None
    if any(
        layer.mask_kind is not MaskKind.ELEMENT or layer.alpha or layer.shared for layer in layers
    ):
        return None
    base_name, head = found
    base: Any = getattr(model, base_name)
    index = {layer.name: layer.index for layer in layers if layer.p > 0.0}
    embedding_site = f"{base_name}.embeddings.dropout"

    def prefix(x: Tensor) -> tuple[Tensor, ...]:
        kwargs = arguments(x)
        keys = kwargs.pop("attention_mask")
        embedded: Tensor = base.embeddings(**kwargs)  # eval: up to the (identity) dropout
        additive = torch.zeros(keys.shape, dtype=embedded.dtype, device=embedded.device)
        return embedded, additive.masked_fill_(keys == 0, torch.finfo(embedded.dtype).min)

    def suffix(dropout: DropoutApplier, embedded: Tensor | Unfolded, additive: Tensor) -> Tensor:
        if not isinstance(dropout, ChunkDropout):
            raise TypeError("the folded text split runs whole chunks (no row calls)")
        sites = _Sites(dropout, index, base_name, additive.shape[-1])
        return _forward(model, base, head, sites, embedded, additive)

    total = sum(p.numel() for p in model.parameters())
    share = sum(p.numel() for p in base.embeddings.parameters()) / max(total, 1)
    return ModelSplit(
        prefix,
        suffix,
        round(share, 4),
        f"folded {type(model).__name__}: embeddings once per row, the encoder written out for "
        "the samples asked for",
        applies_dropout=True,
        dropout_inputs=frozenset({0}) if embedding_site in index else frozenset(),
    )  # no features for the shift score: (L, H) embeddings are no summary of a text


@dataclass(frozen=True)
class _Span:
    """One piece of the chunk: its rows in the sampler's padded layout and in the compact one."""

    start: int
    """First row in the padded layout."""
    padded: int
    """Its rows there."""
    at: int
    """First row in the compact layout."""
    samples: int
    """Samples computed before the cut."""
    rows: int
    """Input rows B of its job."""

    @property
    def computed(self) -> int:
        return self.samples * self.rows


class _Sites:
    """A run's dropout sites by module name, applied to compact or padded activations."""

    def __init__(
        self, dropout: ChunkDropout, index: dict[str, int], base: str, length: int
    ) -> None:
        """The chunk's sites and layouts for sequences of ``length``: compact (the asked samples
        only) when ``length`` is a multiple of ``ROW_ALIGN``, else the padded layout itself."""
        self.dropout = dropout
        self.index = index
        self.base = base
        self.compact = length % ROW_ALIGN == 0
        self.spans: list[_Span] = []
        start = at = 0
        for piece in dropout.pieces:
            samples = piece.t1 - piece.t0 if self.compact else piece.covered_samples
            self.spans.append(_Span(start, piece.padded_rows, at, samples, piece.rows))
            start += piece.padded_rows
            at += samples * piece.rows if self.compact else piece.padded_rows

    def masks(
        self, name: str, shape: tuple[int, ...], dtype: torch.dtype, scaled: bool = True
    ) -> list[Tensor] | None:
        """Scaled masks (samples, 1, *shape) of each span for the next call of site ``name``
        (0 or 1 without ``scaled``: see ``scale``); None when the site is not sampled."""
        index = self.index.get(name)
        if index is None:
            return None
        return self.dropout.sample_masks(index, shape, dtype, not self.compact, scaled)

    def scale(self, name: str) -> float:
        """1 / (1 - p) of sampled site ``name``."""
        return 1.0 / (1.0 - self.dropout.layers[self.index[name]].p)

    def apply(self, name: str, x: Tensor) -> Tensor:
        """Site ``name`` on activations in the sampler's padded layout (its own masking)."""
        index = self.index.get(name)
        return x if index is None else self.dropout.apply(index, x)

    def compacted(self, value: Tensor) -> Tensor:
        """A folded value (padded layout) in the compact layout."""
        if not self.compact:
            return value
        parts = [value[s.start : s.start + s.computed] for s in self.spans]
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def padded(self, value: Tensor) -> Tensor:
        """Compact activations in the sampler's padded layout (padding rows zero)."""
        if not self.compact:
            return value
        last = self.spans[-1]
        out = value.new_zeros((last.start + last.padded, *value.shape[1:]))
        for s in self.spans:
            out[s.start : s.start + s.computed] = value[s.at : s.at + s.computed]
        return out

    def views(self, x: Tensor) -> list[Tensor]:
        """Each span's computed rows of compact x, as (samples, B, *F) views."""
        return [
            x[s.at : s.at + s.computed].view(s.samples, s.rows, *x.shape[1:]) for s in self.spans
        ]


def _forward(
    model: Any, base: Any, head: Head, sites: _Sites, embedded: Tensor | Unfolded, additive: Tensor
) -> Tensor:
    """Logits (padded rows, C) of the chunk."""
    encoder_layers = list(base.encoder.layer)
    keys = sites.compacted(additive)[:, None, :]  # (rows, 1, L): added to every query's scores
    masking = bool((keys != 0).any())
    h = _embedded(sites, embedded)
    last = len(encoder_layers) - 1
    for number, layer in enumerate(encoder_layers):
        name = f"{sites.base}.encoder.layer.{number}"
        if number < last:
            h = _layer(layer, name, sites, h, keys if masking else None)
        else:
            h = _last_layer(layer, name, sites, h, keys if masking else None)
    return head(model, sites, h)


def _embedded(sites: _Sites, embedded: Tensor | Unfolded) -> Tensor:
    """The encoder's input (compact rows, L, H): the embeddings, dropped out per sample (or
    folded by the sampler already, when the embedding dropout is not sampled)."""
    if isinstance(embedded, Tensor):
        return sites.compacted(embedded)
    pieces = sites.dropout.pieces
    values = [sites.dropout.prefix_outputs[piece.job][embedded.index] for piece in pieces]
    features = tuple(values[0].shape[1:])
    name = f"{sites.base}.embeddings.dropout"
    masks = sites.masks(name, features, values[0].dtype, scaled=False)
    assert masks is not None  # the value comes unfolded only when its dropout is sampled
    scale, parts = sites.scale(name), []
    for rows, mask, span in zip(values, masks, sites.spans, strict=True):
        # (rows x scale) x 0/1: the products of rows x scaled masks, one pass fewer
        parts.append(torch.mul(rows * scale, mask).view(span.computed, *features))
        if span.computed < span.padded and not sites.compact:
            parts.append(rows.new_zeros((span.padded - span.computed, *features)))
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def _masked_residual(sites: _Sites, name: str, x: Tensor, residual: Tensor) -> Tensor:
    """residual + dropout(x) on compact activations (rows, L, H), one pass per span."""
    masks = sites.masks(name, tuple(x.shape[1:]), x.dtype, scaled=False)
    if masks is None:
        return x.add_(residual)
    scale = sites.scale(name)  # x x scale x 0/1: the products of x x scaled masks
    if len(masks) == 1 and sites.compact:
        (view,), (kept,) = sites.views(x), sites.views(residual)
        return torch.addcmul(kept, view, masks[0], value=scale).view_as(x)
    out = torch.empty_like(x) if sites.compact else x.clone()  # padding rows: anything finite
    for view, kept, mask, target in zip(
        sites.views(x), sites.views(residual), masks, sites.views(out), strict=True
    ):
        torch.addcmul(kept, view, mask, value=scale, out=target)
    return out


def _attention(
    attention: Any,
    name: str,
    sites: _Sites,
    h: Tensor,
    keys: Tensor | None,
    queries: int | None,
) -> Tensor:
    """Self-attention context (rows, q, H) for compact h (rows, L, H): every query, or the
    first ``queries``; the probabilities' dropout draws the masks of all L queries."""
    query = _linear(attention.query, h if queries is None else h[:, :queries])
    key, value = _linear(attention.key, h), _linear(attention.value, h)
    heads, size = attention.num_attention_heads, attention.attention_head_size
    length, scored = h.shape[1], query.shape[1]
    with cut_from(length):  # the masks of every query drawn, those of the scored ones kept
        masks = sites.masks(f"{name}.dropout", (heads, scored, length), h.dtype)
    scale = attention.scaling
    context = h.new_empty((h.shape[0], scored, heads * size))
    scores = h.new_empty((h.shape[0], scored, length))
    for k in range(heads):
        columns = slice(k * size, (k + 1) * size)
        # the product times the scale in one call (beta 0: the buffer's contents are not read)
        torch.baddbmm(
            scores, query[..., columns], key[..., columns].transpose(1, 2), beta=0,
            alpha=scale, out=scores,
        )  # fmt: skip
        if keys is not None:
            scores.add_(keys)
        probabilities = torch.softmax(scores, dim=-1)
        if masks is not None:
            for view, mask in zip(sites.views(probabilities), masks, strict=True):
                view.mul_(mask[:, :, k])
        torch.bmm(probabilities, value[..., columns], out=context[..., columns])
    return context


def _layer(layer: Any, name: str, sites: _Sites, h: Tensor, keys: Tensor | None) -> Tensor:
    """One encoder layer on compact h (rows, L, H)."""
    context = _attention(layer.attention.self, f"{name}.attention.self", sites, h, keys, None)
    output = layer.attention.output
    projected = _linear(output.dense, context)
    attended = output.LayerNorm(
        _masked_residual(sites, f"{name}.attention.output.dropout", projected, h)
    )
    inner = _activated(layer.intermediate, _linear(layer.intermediate.dense, attended))
    block = layer.output
    result: Tensor = block.LayerNorm(
        _masked_residual(sites, f"{name}.output.dropout", _linear(block.dense, inner), attended)
    )
    return result


def _activated(intermediate: Any, x: Tensor) -> Tensor:
    """The feed-forward activation on x; exact GELU (BERT's and RoBERTa's ``gelu``) in place,
    the same numbers without writing a second (rows, L, intermediate) tensor."""
    act = intermediate.intermediate_act_fn
    if getattr(act, "act", None) is functional.gelu:  # transformers' GELUActivation
        activated: Tensor = torch.ops.aten.gelu_(x)
        return activated
    result: Tensor = act(x)
    return result


def _linear(module: nn.Linear, x: Tensor) -> Tensor:
    """``module(x)`` as a product then the bias added in place: no copy of the bias into the
    output before the product (which ``addmm`` makes); the same numbers here."""
    out = torch.matmul(x, module.weight.t())
    return out if module.bias is None else out.add_(module.bias)


def _last_layer(layer: Any, name: str, sites: _Sites, h: Tensor, keys: Tensor | None) -> Tensor:
    """The last encoder layer for the first position only: its attention on compact rows,
    the rest in the sampler's padded layout (one row per product row: aligned by padding)."""
    length = h.shape[1]
    context = _attention(layer.attention.self, f"{name}.attention.self", sites, h, keys, 1)
    context, residual = sites.padded(context), sites.padded(h[:, :1])
    output = layer.attention.output
    with cut_from(length):  # the masks of every position, the first kept
        dropped = sites.apply(f"{name}.attention.output.dropout", output.dense(context))
        attended = output.LayerNorm(dropped + residual)
        inner = layer.intermediate.intermediate_act_fn(layer.intermediate.dense(attended))
        block = layer.output
        dropped = sites.apply(f"{name}.output.dropout", block.dense(inner))
    result: Tensor = block.LayerNorm(dropped + attended)
    return result
