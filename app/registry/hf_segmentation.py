"""Hugging Face semantic segmentation: ``SegformerForSemanticSegmentation`` on pixel rows.

The network answers (B, C, H, W) logits at the input's size: Segformer's own logits are at a
quarter of it, and are upsampled bilinearly as its image processor's post-processing does
(logits, before the softmax). Its randomness, all sampled with seeded masks:
- the decode head's ``classifier_dropout_prob`` (``decode_head.dropout``): with
  ``mc_dropout: head`` it is the only site, the encoder and the decode head up to it run once
  per image and only the 1x1 classifier per pass (:func:`segformer_head_split`);
- stochastic depth (``drop_path_rate``), one seeded keep/drop per residual branch and pass
  (``SampledDropPath`` of :mod:`app.registry.hf_image`);
- hidden dropout (``hidden_dropout_prob``) and attention-probability dropout
  (``attention_probs_dropout_prob``, through mcdrop's attention function).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from app.engine.compiled import DropoutApplier
from app.engine.prefix import ModelSplit

HEAD_DROPOUT = "decode_head.dropout"


def upsampled(logits: Tensor, size: tuple[int, int]) -> Tensor:
    """(B, C, h, w) logits -> (B, C, *size), bilinear (align_corners=False, as Segformer's
    post-processing)."""
    if tuple(logits.shape[-2:]) == size:
        return logits
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


class PretrainedSegmenter(nn.Module):
    """A transformers semantic segmentation model on pixel rows (B, 3, H, W) -> (B, C, H, W)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        logits: Tensor = self.model(pixel_values=x).logits
        return upsampled(logits, (int(x.shape[-2]), int(x.shape[-1])))


def _fused(head: Any, states: tuple[Tensor, ...]) -> Tensor:
    """The decode head up to its dropout: each stage projected, upsampled, concatenated, fused
    (SegformerDecodeHead.forward without its last two steps)."""
    batch = states[-1].shape[0]
    first = states[0].shape[2:]
    projected = []
    for state, linear in zip(states, head.linear_projections, strict=True):
        height, width = state.shape[2], state.shape[3]
        hidden = linear(state).transpose(1, 2).reshape(batch, -1, height, width)
        projected.append(F.interpolate(hidden, size=first, mode="bilinear", align_corners=False))
    fused: Tensor = head.activation(
        head.batch_norm(head.linear_fuse(torch.cat(projected[::-1], 1)))
    )
    return fused


def segformer_head_split(network: PretrainedSegmenter, size: tuple[int, int]) -> ModelSplit:
    """Encoder and decode head once per image (prefix: the fused features before the head's
    dropout), the dropout (hooked by the sampler) and the 1x1 classifier per pass, then the
    upsampling to ``size``."""
    model: Any = network.model
    head = model.decode_head

    def prefix(x: Tensor) -> tuple[Tensor, ...]:
        states = model.segformer(pixel_values=x, output_hidden_states=True).hidden_states
        return (_fused(head, tuple(states)),)

    def suffix(applier: DropoutApplier, fused: Tensor) -> Tensor:
        return upsampled(head.classifier(head.dropout(fused)), size)

    total = sum(p.numel() for p in model.parameters())
    once = total - sum(p.numel() for p in head.classifier.parameters())
    reason = (
        "Hugging Face split: the encoder and decode head run once per image, the classifier "
        "per sample"
    )
    return ModelSplit(prefix, suffix, round(once / max(total, 1), 4), reason)
