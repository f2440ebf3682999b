"""A Hugging Face image-classifier folder -> a network on pixel rows (B, 3, H, W), preprocessed
by the folder's own image processor on its Pillow backend (torchvision is not needed).

Supported: MobileNetV2, EfficientNet, ConvNeXt and ViT image classification, and Segformer
semantic segmentation (:mod:`app.registry.hf_segmentation`). Their dropout:
- MobileNetV2: the classifier's dropout only, so the backbone runs once per image;
- EfficientNet: dropout in the blocks and before the classifier (``mc_dropout: head`` keeps only
  the classifier's, and the backbone runs once per image);
- ConvNeXt: stochastic depth (``drop_path_rate``), sampled as one seeded keep/drop per residual
  block and pass (:class:`SampledDropPath`); no head dropout;
- ViT: hidden, embedding and attention-probability dropout (attention runs the ``mcdrop``
  attention function, which calls an ``nn.Dropout`` the loader adds to each attention module).
A model without dropout (ResNet) is refused with how to add a dropout head.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import Tensor, nn

from app.engine.compiled import DropoutApplier
from app.engine.dropout import find_dropout_layers
from app.engine.images import VISION_EXTRA, require_pillow
from app.engine.prefix import ModelSplit
from app.engine.selection import select_dropout
from app.errors import ModelLoadError
from app.inputs.image import ImageKind
from app.registry.card import ModelCard
from app.registry.card_inputs import ImageInputSpec
from app.registry.hf_segmentation import HEAD_DROPOUT, PretrainedSegmenter, segformer_head_split
from app.registry.huggingface import (
    attention_sites,
    config_labels,
    from_pretrained,
    hf_folder,
    require_transformers,
    sampling_split,
)
from app.registry.network import Network, describe_sites
from app.registry.served import LoadOptions

if TYPE_CHECKING:
    from PIL import Image


@dataclass(frozen=True)
class ImageArchitecture:
    """How mcdrop runs one transformers image classifier."""

    base: str
    """Attribute holding the backbone; dropout outside it is the head's."""
    head: str | None
    """Attribute of the head's dropout (applied to the pooled output), None if it has none."""
    attention: bool = False
    """Whether attention dropout is applied functionally (ViT) and must be made a module."""
    segmentation: bool = False
    """A semantic segmentation model (``task: segmentation``; app/registry/hf_segmentation.py)."""


SUPPORTED: dict[str, ImageArchitecture] = {
    "MobileNetV2ForImageClassification": ImageArchitecture("mobilenet_v2", "dropout"),
    "EfficientNetForImageClassification": ImageArchitecture("efficientnet", "dropout"),
    "ConvNextForImageClassification": ImageArchitecture("convnext", None),
    "ViTForImageClassification": ImageArchitecture("vit", None, attention=True),
    "SegformerForSemanticSegmentation": ImageArchitecture(
        "segformer", HEAD_DROPOUT, attention=True, segmentation=True
    ),
}
NO_DROPOUT = {"ResNetForImageClassification": "ResNet"}
PROBE_ROWS = 2


class SampledDropPath(nn.Module):
    """Stochastic depth as a dropout module: the residual branch (B, ...) is multiplied by
    ``dropout(ones(B, 1, ...))``. Identity in eval mode; under mcdrop the seeded mask is one
    keep/drop per sample, shared by the rows of a request (one sampled network per pass)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout(p)

    def forward(self, x: Tensor) -> Tensor:
        keep: Tensor = self.dropout(x.new_ones((x.shape[0],) + (1,) * (x.dim() - 1)))
        return x * keep


class ImageProcessorPipeline:
    """The folder's image processor (Pillow backend) as an mcdrop image pipeline."""

    channels = 3

    def __init__(self, processor: Any) -> None:
        self.processor = processor

    def __call__(self, image: Image.Image) -> Tensor:
        """(3, H, W) float32 pixel values of one RGB image."""
        values: Tensor = self.processor(images=image, return_tensors="pt")["pixel_values"][0]
        return values.float()

    def largest_pixels(self, width: int, height: int) -> int:
        """Pixels after the processor's resize: a fixed ``height`` x ``width``, or the shorter
        side scaled to ``shortest_edge`` (the longer one capped at ``longest_edge``)."""
        size = getattr(self.processor, "size", None) or {}
        if not getattr(self.processor, "do_resize", True):
            return width * height
        if "height" in size and "width" in size:
            return max(width * height, int(size["height"]) * int(size["width"]))
        if "shortest_edge" in size:
            scale = int(size["shortest_edge"]) / min(width, height)
            if "longest_edge" in size:
                scale = min(scale, int(size["longest_edge"]) / max(width, height))
            return max(width * height, round(width * scale) * round(height * scale))
        return width * height

    def describe(self) -> str:
        """The processor's class and its steps' settings."""
        settings = ("size", "crop_size", "do_center_crop", "rescale_factor", "image_mean")
        parts = [f"{key} {_compact(getattr(self.processor, key, None))}" for key in settings]
        parts.append(f"image_std {_compact(getattr(self.processor, 'image_std', None))}")
        return f"{type(self.processor).__name__}: " + ", ".join(parts)


def _compact(value: Any) -> Any:
    """A processor setting without its unset fields (``SizeDict(height=32, width=None)`` ->
    ``{'height': 32}``); rounded floats."""
    if hasattr(value, "__dict__") and not isinstance(value, type):
        return {k: v for k, v in vars(value).items() if v is not None}
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, list | tuple):
        return [_compact(item) for item in value]
    return value


class PretrainedImageClassifier(nn.Module):
    """A transformers image classifier on pixel rows (B, 3, H, W) -> logits (B, C)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        logits: Tensor = self.model(pixel_values=x).logits
        return logits


def load_image_classifier(card: ModelCard, folder: Path, options: LoadOptions) -> Network:
    """Model, image processor and dropout sites of the card's Hugging Face folder."""
    assert card.architecture.huggingface is not None and isinstance(card.input, ImageInputSpec)
    if card.input.scan_decoder() is not None:
        raise ModelLoadError(
            f"model '{card.name}': DICOM and NIfTI inputs (input.formats) need the card's own "
            "preprocessing (input.size), not a Hugging Face image processor"
        )
    require_pillow()
    path = hf_folder(folder, card.architecture.huggingface)
    model, architecture = _load_pretrained(path)
    pipeline = ImageProcessorPipeline(_load_processor(path))
    limit, pixels = options.value_limit, options.max_image_pixels
    probe = ImageKind(pipeline, [3], limit, pixels).probe(PROBE_ROWS)
    kind = ImageKind(pipeline, [3, *probe.shape[-2:]], limit, pixels)
    config: Any = model.config
    update: dict[str, Any] = {
        "input": card.input.model_copy(update={"channels": 3, "size": tuple(probe.shape[-2:])})
    }
    if card.labels is None:
        update["labels"] = config_labels(config)
    card = card.model_copy(update=update)
    _check_task(card, architecture, path)
    found = find_dropout_layers(model)
    head = {architecture.head} if architecture.head is not None else set()
    layers = select_dropout(found, card.mc_dropout, head, card.name, card.dropout_share)
    classifier: nn.Module
    if architecture.segmentation:
        classifier = PretrainedSegmenter(model).eval()
        size = (int(probe.shape[-2]), int(probe.shape[-1]))
        head_split = lambda: segformer_head_split(classifier, size)  # noqa: E731
    else:
        classifier = PretrainedImageClassifier(model).eval()
        head_split = lambda: image_head_split(model, architecture)  # noqa: E731
    classifier.to(options.device, options.dtype)
    return Network(
        card=card,
        module=classifier,
        module_prefix="model.",
        layers=layers,
        sites=describe_sites(found, layers, attention_sites(model)),
        split=sampling_split(classifier, layers, head, head_split),
        probe=probe.to(options.device, options.dtype),
        input_kind=kind,
    )


def _check_task(card: ModelCard, architecture: ImageArchitecture, path: Path) -> None:
    """A segmentation folder goes with ``task: segmentation``, a classifier with any other."""
    if architecture.segmentation != (card.task == "segmentation"):
        what = "a semantic segmentation" if architecture.segmentation else "an image classifier"
        wanted = "task: segmentation" if architecture.segmentation else "a classification task"
        raise ModelLoadError(f"{path}: the folder holds {what} model; the card needs {wanted}")


def image_head_split(model: nn.Module, architecture: ImageArchitecture) -> ModelSplit:
    """Backbone once per image (prefix: its pooled output), the head per sample (suffix: the
    head's dropout, hooked by the sampler, then the classifier)."""
    assert architecture.head is not None
    base: nn.Module = getattr(model, architecture.base)
    dropout: nn.Module = getattr(model, architecture.head)
    classifier: nn.Module = getattr(model, "classifier")  # noqa: B009

    def prefix(x: Tensor) -> tuple[Tensor, ...]:
        pooled: Tensor = base(pixel_values=x).pooler_output
        return (pooled.flatten(1),)

    def suffix(applier: DropoutApplier, pooled: Tensor) -> Tensor:
        logits: Tensor = classifier(dropout(pooled))
        return logits

    total = sum(p.numel() for p in model.parameters())
    share = sum(p.numel() for p in base.parameters()) / max(total, 1)
    reason = f"Hugging Face split: {architecture.base} runs once per image, the head per sample"
    return ModelSplit(prefix, suffix, round(share, 4), reason, feature_index=0)


def _load_pretrained(path: Path) -> tuple[nn.Module, ImageArchitecture]:
    try:
        transformers = require_transformers()
    except ModelLoadError:
        raise ModelLoadError(f"{path}: this model needs transformers: {VISION_EXTRA}") from None
    model, architecture = from_pretrained(
        transformers,
        path,
        SUPPORTED,
        lambda arch: arch.attention,
        kind=" for images",
        check=lambda declared: _refuse_without_dropout(path, declared),
    )
    _make_dropout_modules(model, architecture)
    return model.eval(), architecture


def _refuse_without_dropout(path: Path, declared: list[str]) -> None:
    for name in declared:
        if name in NO_DROPOUT:
            raise ModelLoadError(
                f"{path}: {name} has no dropout, so MC dropout has nothing to sample. Add a "
                "dropout head and fine-tune it (e.g. classifier = nn.Sequential(nn.Flatten(), "
                "nn.Dropout(0.2), nn.Linear(features, labels))), then serve it as a 'file' "
                f"model with that head; or use one of {', '.join(SUPPORTED)}"
            )


def _make_dropout_modules(model: nn.Module, architecture: ImageArchitecture) -> None:
    """Give functional dropout a module the sampler can reach: stochastic depth becomes
    :class:`SampledDropPath`, and ViT attention gets the ``dropout`` module that mcdrop's
    attention function applies to the probabilities."""
    for name, module in list(model.named_modules()):
        if type(module).__name__.endswith("DropPath"):
            p = float(getattr(module, "drop_prob", 0.0) or 0.0)
            parent, _, attribute = name.rpartition(".")
            setattr(model.get_submodule(parent), attribute, SampledDropPath(p))
        elif architecture.attention and type(module).__name__.endswith("Attention"):
            p = float(getattr(module, "attention_dropout", 0.0))
            if not isinstance(getattr(module, "dropout", None), nn.Dropout):
                module.dropout = nn.Dropout(p)


def _load_processor(path: Path) -> Any:
    transformers = require_transformers()
    if not (path / "preprocessor_config.json").is_file():
        raise ModelLoadError(f"{path}: no preprocessor_config.json (the image processor)")
    try:
        return transformers.AutoImageProcessor.from_pretrained(
            path, local_files_only=True, trust_remote_code=False, backend="pil"
        )
    except Exception as exc:  # transformers raises many kinds for a bad processor config
        raise ModelLoadError(f"{path}: cannot load the image processor: {exc}") from exc
