"""Which dropout sites are sampled: the card's ``mc_dropout`` (all, head, or a list of names)."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace
from typing import Literal

from app.engine.dropout import DropoutLayer, MaskKind
from app.errors import ModelLoadError

DropoutChoice = Literal["all", "head"] | list[str]


def select_dropout(
    layers: Sequence[DropoutLayer],
    choice: DropoutChoice,
    head: Collection[str],
    model_name: str,
    share: Mapping[str, Sequence[int]] | None = None,
) -> list[DropoutLayer]:
    """The sampled layers, re-indexed 0..k-1 in the order given.

    ``head`` names the dropout sites after the encoder or backbone (what ``head`` samples);
    a list must name existing sites. ``share``: sampled site -> activation dimensions (batch =
    0) sharing one mask. Raises ModelLoadError when nothing would be sampled or ``share`` names
    a site that is not sampled.
    """
    names = [layer.name for layer in layers]
    if choice == "all":
        chosen = list(layers)
    elif choice == "head":
        chosen = [layer for layer in layers if layer.name in head]
        if not chosen:
            raise ModelLoadError(
                f"model '{model_name}': mc_dropout: head, but no dropout follows the "
                f"encoder/backbone (dropout sites: {', '.join(names) or 'none'})"
            )
    else:
        unknown = [name for name in choice if name not in names]
        if unknown:
            raise ModelLoadError(
                f"model '{model_name}': mc_dropout names unknown dropout sites "
                f"{', '.join(unknown)}; the model has: {', '.join(names)}"
            )
        chosen = [layer for layer in layers if layer.name in choice]
    modules = [layer for layer in layers if layer.mask_kind is MaskKind.MODULE]
    chosen = [layer for layer in layers if layer in chosen or layer in modules]
    return _with_share(chosen, share or {}, model_name)


def _with_share(
    chosen: list[DropoutLayer], share: Mapping[str, Sequence[int]], model_name: str
) -> list[DropoutLayer]:
    """The chosen layers re-indexed, each with its shared dimensions (card dims minus 1)."""
    unsampled = sorted(set(share) - {layer.name for layer in chosen})
    if unsampled:
        raise ModelLoadError(
            f"model '{model_name}': mc_dropout.share names {', '.join(unsampled)}, not a "
            f"sampled dropout site (sampled: {', '.join(layer.name for layer in chosen)})"
        )
    return [
        replace(
            layer, index=index, shared=tuple(sorted({d - 1 for d in share.get(layer.name, [])}))
        )
        for index, layer in enumerate(chosen)
    ]


def describe_choice(choice: DropoutChoice) -> str:
    """The choice as shown in metadata: ``all``, ``head`` or ``names``."""
    return choice if isinstance(choice, str) else "names"
