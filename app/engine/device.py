"""Resolving the device and dtype settings to torch objects."""

from __future__ import annotations

import torch

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(setting: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if setting == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but no CUDA device is available")
    return torch.device(setting)


def resolve_dtype(setting: str) -> torch.dtype:
    """torch dtype for ``float32``, ``bfloat16`` or ``float16``."""
    try:
        return _DTYPES[setting]
    except KeyError:
        raise ValueError(f"unknown dtype '{setting}', expected one of {sorted(_DTYPES)}") from None
