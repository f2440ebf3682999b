"""Input kinds: what a model takes, one module per kind behind one contract
(:mod:`app.inputs.base`): :mod:`~app.inputs.tensor`, :mod:`~app.inputs.text`,
:mod:`~app.inputs.image`, :mod:`~app.inputs.audio`."""

from app.inputs.base import (
    INPUT_NAME,
    InputDescription,
    InputKind,
    Rows,
    TensorInfo,
    WireTensor,
)

__all__ = ["INPUT_NAME", "InputDescription", "InputKind", "Rows", "TensorInfo", "WireTensor"]
