"""An audio classifier's forward as stages: what mcdrop's split cuts between.

Each :class:`Stage` maps a state on: ``(hidden,)``, or ``(hidden, mask)`` for a model batched
with an attention mask, ``mask`` (B, T) bool marking each row's true frames. The first stage of
a waveform model reads ``(waveform,)`` or ``(waveform, lengths)`` (lengths (B,) int64, in
samples). Run one after another they are the model's own eval forward (tested); the sampler runs
the stages before the first one holding a sampled dropout once per row.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

State = tuple[Tensor, ...]
"""(hidden,) or (hidden, mask): hidden (B, T, F) (the waveform (B, S) first), mask (B, T)."""


@dataclass(frozen=True)
class Stage:
    """One step of an audio classifier's forward: ``run`` maps the state on, and the dropout
    modules under ``modules`` (name prefixes in the transformers model) are its."""

    name: str
    modules: tuple[str, ...]
    run: Callable[[State], State]

    def holds(self, site: str) -> bool:
        """Whether dropout site ``site`` (a module name) is applied in this stage."""
        return any(site == m or site.startswith(f"{m}.") for m in self.modules)


def run_stages(stages: Sequence[Stage], state: State) -> State:
    """The stages one after another on ``state``."""
    for stage in stages:
        state = stage.run(state)
    return state


class SampledLayerDrop(nn.Module):
    """LayerDrop as a dropout module: ``forward(before, after)`` is ``after`` (the layer's
    output) or, for a dropped layer, ``before`` (its input), chosen by ``dropout(ones(B, 1, 1))``.
    Identity (``after``) in eval mode; under mcdrop one seeded keep/skip per sample, shared by
    the rows of a request (one sampled network per pass)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout(p)

    def forward(self, before: Tensor, after: Tensor) -> Tensor:
        keep = self.dropout(after.new_ones((after.shape[0],) + (1,) * (after.dim() - 1)))
        return torch.where(keep > 0, after, before)


def _tensor(output: Any) -> Tensor:
    """The hidden states of a module output (a tensor, or a tuple starting with them)."""
    value: Tensor = output[0] if isinstance(output, tuple) else output
    return value


def _layer_stage(name: str, layer: nn.Module, masks: Callable[[Tensor, Tensor], Any]) -> Stage:
    """An encoder layer (with its LayerDrop, if any); ``masks(hidden, mask)`` -> the attention
    mask the layer takes (the model's own mask function)."""
    gate = getattr(layer, "layerdrop", None)

    def run(state: State) -> State:
        hidden = state[0]
        attention = masks(hidden, state[1]) if len(state) > 1 else None
        out = _tensor(layer(hidden, attention_mask=attention))
        out = gate(hidden, out) if isinstance(gate, SampledLayerDrop) else out
        return (out, *state[1:])

    return Stage(name, (name,), run)


SPLIT_LAYERS = (
    "Wav2Vec2EncoderLayer",
    "Wav2Vec2EncoderLayerStableLayerNorm",
    "HubertEncoderLayer",
    "HubertEncoderLayerStableLayerNorm",
)
"""Encoder layers whose forward :func:`_split_layer_stages` reproduces in two stages."""


def _split_layer_stages(
    name: str, layer: Any, masks: Callable[[Tensor, Tensor], Any], stable: bool
) -> list[Stage]:
    """A Wav2Vec2 / HuBERT encoder layer as two stages, cut at its last dropout (the feed
    forward's ``output_dropout``): up to the feed forward's output dense (attention, its
    dropout, the residual, the layer norm, the intermediate dense and dropout), then the output
    dropout, the residual and (post-LN) the final layer norm, with the layer's LayerDrop. The
    first stage's state is ``(before, residual, update, *mask)``: the layer's input, the
    residual the update is added to, the feed forward's output before its dropout (each
    (B, T, F)). Run together they are ``layer.forward`` (tested)."""
    feed_forward = layer.feed_forward
    gate = getattr(layer, "layerdrop", None)

    def to_update(state: State) -> State:
        before = state[0]
        attention = masks(before, state[1]) if len(state) > 1 else None
        hidden = layer.layer_norm(before) if stable else before
        hidden = _tensor(layer.attention(hidden, attention_mask=attention))
        residual = before + layer.dropout(hidden)
        if not stable:
            residual = layer.layer_norm(residual)
        inner = layer.final_layer_norm(residual) if stable else residual
        inner = feed_forward.intermediate_act_fn(feed_forward.intermediate_dense(inner))
        update = feed_forward.output_dense(feed_forward.intermediate_dropout(inner))
        return (before, residual, update, *state[1:])

    def from_update(state: State) -> State:
        before, residual, update, *mask = state
        out = residual + feed_forward.output_dropout(update)
        if not stable:
            out = layer.final_layer_norm(out)
        out = gate(before, out) if isinstance(gate, SampledLayerDrop) else out
        return (out, *mask)

    ffn = f"{name}.feed_forward"
    first: tuple[str, ...] = (f"{name}.attention", f"{name}.dropout", f"{name}.layer_norm")
    first += (f"{ffn}.intermediate_dense", f"{ffn}.intermediate_dropout", f"{ffn}.output_dense")
    last = (f"{ffn}.output_dropout", f"{name}.layerdrop")
    final_norm = (f"{name}.final_layer_norm",)
    first_modules = first + (final_norm if stable else ())
    last_modules = last + (() if stable else final_norm)
    return [
        Stage(f"{name} to its feed-forward output", first_modules, to_update),
        Stage(f"{name} from its output dropout", last_modules, from_update),
    ]


def _last_layer_stages(
    name: str, layer: nn.Module, masks: Callable[[Tensor, Tensor], Any], stable: bool
) -> list[Stage]:
    """The encoder's last layer, in two stages where its forward is known (so ``mc_dropout:
    head`` samples its output dropout alone and runs the rest once per row), else one."""
    known = type(layer).__name__ in SPLIT_LAYERS and getattr(layer, "adapter_layer", None) is None
    if known and isinstance(getattr(layer, "feed_forward", None), nn.Module):
        return _split_layer_stages(name, layer, masks, stable)
    return [_layer_stage(name, layer, masks)]


def _on_hidden(function: Callable[[Tensor], Any]) -> Callable[[State], State]:
    return lambda state: (_tensor(function(state[0])), *state[1:])


def speech_stages(model: Any, base_name: str) -> list[Stage]:
    """Wav2Vec2 / HuBERT: conv features, projection, encoder input, layers, pooled head."""
    from transformers.masking_utils import create_bidirectional_mask

    base = getattr(model, base_name)
    encoder = base.encoder
    stable = bool(model.config.do_stable_layer_norm)

    def conv(state: State) -> State:
        features = base.feature_extractor(state[0]).transpose(1, 2)
        if len(state) == 1:
            return (features,)
        frames = base._get_feat_extract_output_lengths(state[1]).to(torch.long)
        steps = torch.arange(features.shape[1], device=features.device)
        return (features, steps[None, :] < frames[:, None])

    def encoder_input(state: State) -> State:
        hidden = state[0]
        if len(state) > 1:  # padded frames are zeros, as the model's encoder makes them
            hidden = hidden.masked_fill(~state[1][..., None], 0.0)
        hidden = hidden + encoder.pos_conv_embed(hidden)
        if not stable:
            hidden = encoder.layer_norm(hidden)
        return (encoder.dropout(hidden), *state[1:])

    def masks(hidden: Tensor, mask: Tensor) -> Any:
        return create_bidirectional_mask(
            config=model.config, inputs_embeds=hidden, attention_mask=mask
        )

    linear = isinstance(model.projector, nn.Linear)

    def head(state: State) -> State:
        # A linear projector commutes with the mean over frames: project the mean (T times
        # fewer rows, the model's numbers within float rounding) rather than every frame.
        hidden = encoder.layer_norm(state[0]) if stable else state[0]
        frames = hidden if linear else model.projector(hidden)
        if len(state) == 1:
            pooled = frames.mean(dim=1)
        else:
            mask = state[1][..., None]
            pooled = frames.masked_fill(~mask, 0.0).sum(dim=1) / mask.sum(dim=1).clamp_min(1)
        return (model.classifier(model.projector(pooled) if linear else pooled),)

    prefix, last = f"{base_name}.encoder", len(encoder.layers) - 1
    return [
        Stage("conv features", (f"{base_name}.feature_extractor",), conv),
        Stage(
            "feature projection",
            (f"{base_name}.feature_projection",),
            _on_hidden(base.feature_projection),
        ),
        Stage("encoder input", (f"{prefix}.pos_conv_embed", f"{prefix}.dropout"), encoder_input),
        *(
            _layer_stage(f"{prefix}.layers.{i}", layer, masks)
            for i, layer in enumerate(encoder.layers[:-1])
        ),
        *(
            _last_layer_stages(f"{prefix}.layers.{last}", encoder.layers[last], masks, stable)
            if len(encoder.layers)
            else []
        ),
        Stage("head", ("projector", "classifier"), head),
    ]


def spectrogram_stages(model: Any, base_name: str) -> list[Stage]:
    """AST: patch embeddings (+ CLS, distillation token, positions), their dropout, layers,
    the head on the mean of the two tokens (fixed-size inputs: no mask)."""
    base = getattr(model, base_name)
    embeddings = base.embeddings

    def embed(x: Tensor) -> Tensor:
        patches = embeddings.patch_embeddings(x)
        rows = x.shape[0]
        tokens = (
            embeddings.cls_token.expand(rows, -1, -1),
            embeddings.distillation_token.expand(rows, -1, -1),
            patches,
        )
        embedded: Tensor = torch.cat(tokens, dim=1) + embeddings.position_embeddings
        return embedded

    def head(hidden: Tensor) -> Tensor:
        hidden = base.layernorm(hidden)
        logits: Tensor = model.classifier((hidden[:, 0] + hidden[:, 1]) / 2)
        return logits

    prefix = f"{base_name}.embeddings"
    return [
        Stage("patch embeddings", (f"{prefix}.patch_embeddings",), _on_hidden(embed)),
        Stage("embedding dropout", (f"{prefix}.dropout",), _on_hidden(embeddings.dropout)),
        *(
            _layer_stage(f"{base_name}.layers.{i}", layer, lambda hidden, mask: None)
            for i, layer in enumerate(base.layers)
        ),
        Stage("head", ("classifier",), _on_hidden(head)),
    ]
