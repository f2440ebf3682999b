"""Tiny random-weight Hugging Face image classifiers written as mcdrop model folders (offline)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import yaml

LABELS = {0: "cat", 1: "dog", 2: "fox"}
CROP = {"height": 32, "width": 32}


def image_config(kind: str, **overrides: Any) -> Any:
    """A tiny config of ``kind`` (mobilenet_v2, efficientnet, convnext, vit, resnet)."""
    import transformers

    labels: dict[str, Any] = {"id2label": LABELS, "label2id": {v: k for k, v in LABELS.items()}}
    if kind == "mobilenet_v2":
        options: dict[str, Any] = {"image_size": 32, "depth_multiplier": 0.35}
        options |= {"classifier_dropout_prob": 0.3}
        return transformers.MobileNetV2Config(**options, **labels, **overrides)
    if kind == "efficientnet":
        options = {"image_size": 32, "width_coefficient": 0.1, "depth_coefficient": 0.1}
        options |= {"hidden_dim": 128, "dropout_rate": 0.3, "drop_connect_rate": 0.2}
        return transformers.EfficientNetConfig(**options, **labels, **overrides)
    if kind == "convnext":
        options = {"hidden_sizes": [8, 16], "depths": [2, 2], "num_stages": 2}
        options |= {"drop_path_rate": 0.3}
        return transformers.ConvNextConfig(**options, **labels, **overrides)
    if kind == "vit":
        options = {"image_size": 32, "patch_size": 8, "hidden_size": 16, "num_hidden_layers": 2}
        options |= {"num_attention_heads": 2, "intermediate_size": 32}
        options |= {"hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1}
        return transformers.ViTConfig(**{**options, **overrides}, **labels)
    assert kind == "resnet"
    options = {"embedding_size": 8, "hidden_sizes": [8, 16], "depths": [1, 1]}
    return transformers.ResNetConfig(**options, **labels, **overrides)


MODEL_CLASSES = {
    "mobilenet_v2": "MobileNetV2ForImageClassification",
    "efficientnet": "EfficientNetForImageClassification",
    "convnext": "ConvNextForImageClassification",
    "vit": "ViTForImageClassification",
    "resnet": "ResNetForImageClassification",
}
PROCESSORS = {
    "mobilenet_v2": "MobileNetV2ImageProcessorPil",
    "efficientnet": "EfficientNetImageProcessorPil",
    "convnext": "ConvNextImageProcessorPil",
    "vit": "ViTImageProcessorPil",
    "resnet": "ConvNextImageProcessorPil",
}


def write_hf_image_model(
    root: Path, name: str, kind: str, card: dict[str, Any] | None = None, **config: Any
) -> Path:
    """A model folder: save_pretrained model (safetensors) and Pillow image processor, plus a
    model.yaml with ``architecture: {huggingface: .}`` and ``input: {type: image}``."""
    import transformers

    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = getattr(transformers, MODEL_CLASSES[kind])(image_config(kind, **config)).eval()
    with torch.no_grad():  # transformers' init leaves tiny logits: random weights of scale
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.3)
    model.save_pretrained(folder, safe_serialization=True)
    processor_options: dict[str, Any] = {"size": {"shortest_edge": 32}}
    if kind in ("mobilenet_v2", "efficientnet"):
        processor_options = {"size": {"shortest_edge": 36}, "crop_size": CROP}
        processor_options |= {"do_center_crop": True}
    elif kind == "vit":
        processor_options = {"size": CROP}
    getattr(transformers, PROCESSORS[kind])(**processor_options).save_pretrained(folder)
    document: dict[str, Any] = {
        "name": name,
        "task": "classification",
        "input": {"type": "image"},
        "architecture": {"huggingface": "."},
        "n_samples": {"default": 10, "max": 200},
    }
    document.update(card or {})
    (folder / "model.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    return folder
