"""Messages between HTTP worker processes and the inference process: length-prefixed pickles
over a Unix socket, tensors as raw bytes, large ones through shared memory.

A tensor of at least ``SHM_MIN_BYTES`` travels as the name of a ``multiprocessing.shared_memory``
block that the sender fills and the receiver copies out of and unlinks: the socket carries a few
dozen bytes instead of the data. Smaller tensors (a digits image is 3 KiB, a prediction's
statistics a few hundred bytes) go inline, as their C-order bytes with numpy's dtype name and
the shape (or, for dtypes numpy lacks, with torch's): that costs less than mapping a block.
Either way a tensor arrives as its own contiguous copy: nothing is shared after the message.

Only the server's own processes speak this protocol (the socket is private to ``mcdrop serve``):
a pickle is code, never read one from elsewhere.
"""

from __future__ import annotations

import asyncio
import io
import pickle
import struct
from multiprocessing import resource_tracker, shared_memory
from typing import Any

import numpy as np
import torch
from torch import Tensor

SHM_MIN_BYTES = 64 * 1024
"""Tensors of at least this many bytes go through shared memory, smaller ones inline."""
MAX_MESSAGE_BYTES = 1 << 30
"""A frame longer than this is refused (a broken peer, not a request)."""
_HEADER = struct.Struct("!I")
_NUMPY_DTYPES = frozenset(
    {torch.float64, torch.float32, torch.float16, torch.int64, torch.int32, torch.int16,
     torch.int8, torch.uint8, torch.bool}
)  # fmt: skip
"""Tensor dtypes numpy holds too (not bfloat16, for one)."""


def _bytes_of(tensor: Tensor) -> Tensor:
    """The tensor's values as a flat uint8 tensor (any dtype, any shape, 0-d included)."""
    # A fresh tensor, not .contiguous(): that keeps the 0 strides of an expanded size-1 tensor.
    dense = torch.empty(tensor.shape, dtype=tensor.dtype).copy_(tensor.detach())
    return dense.reshape(-1).view(torch.uint8)


def _inline(data: bytes, dtype: torch.dtype, shape: tuple[int, ...]) -> Tensor:
    if not data:
        return torch.empty(shape, dtype=dtype)
    flat = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    return flat.view(dtype).reshape(shape)


def _shared(name: str, size: int, dtype: torch.dtype, shape: tuple[int, ...]) -> Tensor:
    block = shared_memory.SharedMemory(name=name)
    try:
        flat = torch.frombuffer(block.buf, dtype=torch.uint8, count=size).clone()
    finally:
        block.close()
        block.unlink()
    return flat.view(dtype).reshape(shape)


def _to_shared(raw: Tensor) -> str:
    """A new shared-memory block holding ``raw`` (uint8); the receiver unlinks it."""
    block = shared_memory.SharedMemory(create=True, size=int(raw.numel()))
    # The receiver unlinks the block: the sender's tracker must not unlink it again at exit.
    resource_tracker.unregister(block._name, "shared_memory")  # type: ignore[attr-defined]
    torch.frombuffer(block.buf, dtype=torch.uint8, count=int(raw.numel())).copy_(raw)
    name = block.name
    block.close()
    return name


def _from_raw(data: bytes, dtype: str, shape: tuple[int, ...]) -> Tensor:
    """A tensor of its own (writable) copy of ``data``, numpy ``dtype``, ``shape``."""
    return torch.from_numpy(np.frombuffer(bytearray(data), dtype=np.dtype(dtype)).reshape(shape))


class _Pickler(pickle.Pickler):
    def reducer_override(self, obj: Any) -> Any:
        if not isinstance(obj, Tensor):
            return NotImplemented
        nbytes = obj.numel() * obj.element_size()
        if nbytes < SHM_MIN_BYTES and obj.dtype in _NUMPY_DTYPES:
            # The C-order bytes, numpy's dtype name and the shape: for the many small tensors of
            # a prediction about 2.6 us a tensor both ways, against 9 for a pickled numpy array.
            array = obj.detach().cpu().numpy()
            return _from_raw, (array.tobytes(), array.dtype.str, tuple(obj.shape))
        raw, shape = _bytes_of(obj), tuple(obj.shape)
        if raw.numel() >= SHM_MIN_BYTES:
            return _shared, (_to_shared(raw), int(raw.numel()), obj.dtype, shape)
        return _inline, (raw.numpy().tobytes(), obj.dtype, shape)


def dumps(message: Any) -> bytes:
    """One frame: the length, then the pickled message (tensors as described above)."""
    buffer = io.BytesIO()
    buffer.write(b"\0\0\0\0")
    _Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(message)
    frame = buffer.getbuffer()
    _HEADER.pack_into(frame, 0, len(frame) - _HEADER.size)
    return bytes(frame)


async def read_message(reader: asyncio.StreamReader) -> Any:
    """The next message; ``asyncio.IncompleteReadError`` once the peer closed the socket."""
    (length,) = _HEADER.unpack(await reader.readexactly(_HEADER.size))
    if length > MAX_MESSAGE_BYTES:
        raise ConnectionError(f"a {length}-byte message: more than {MAX_MESSAGE_BYTES}")
    return pickle.loads(await reader.readexactly(length))


def pack_error(error: BaseException) -> tuple[type[BaseException], tuple[Any, ...], dict[str, Any]]:
    """An exception as (type, args, attributes): mcdrop's errors take other arguments than
    the ``args`` they store, so the default pickling could not rebuild them."""
    return type(error), error.args, dict(vars(error))


def unpack_error(
    packed: tuple[type[BaseException], tuple[Any, ...], dict[str, Any]],
) -> BaseException:
    """The exception of :func:`pack_error`, rebuilt without calling its ``__init__``."""
    kind, args, attributes = packed
    error = kind.__new__(kind)
    error.args = args
    vars(error).update(attributes)
    return error


class Outbox:
    """Frames for one socket, sent together once per event-loop iteration: the replies of one
    fused run (or a worker's requests of one iteration) cost one system call, not one each."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self._frames: list[bytes] = []

    def send(self, message: Any) -> None:
        """Queue ``message`` (pickled now, so a failure raises here) for this iteration."""
        frame = dumps(message)
        if not self._frames:
            asyncio.get_running_loop().call_soon(self._flush)
        self._frames.append(frame)

    def _flush(self) -> None:
        frames, self._frames = self._frames, []
        if not self.writer.is_closing():
            self.writer.write(b"".join(frames))
