"""Cooperative stopping points for work that runs off the event loop (decoding, tokenizing,
greedy selection).

A thread cannot be interrupted from outside, so long work calls :func:`checkpoint` between its
pieces (one image, one batch of texts, one BatchBALD pick). The data plane runs such work under
:func:`stopping_when`, whose test raises once the request's deadline has passed, its client has
gone or the server is shutting down; outside it a checkpoint does nothing, so the same code runs
unchanged from a script or a test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

StopTest = Callable[[], None]
"""Returns when the work may go on, raises (the request's own error) when it must stop."""

_current: ContextVar[StopTest | None] = ContextVar("mcdrop_stop_test", default=None)


def checkpoint() -> None:
    """Raise the current work's stop reason, if it has one; else return at once."""
    test = _current.get()
    if test is not None:
        test()


@contextmanager
def stopping_when(test: StopTest) -> Iterator[None]:
    """Make :func:`checkpoint` call ``test`` inside this block (this thread's context only)."""
    token = _current.set(test)
    try:
        yield
    finally:
        _current.reset(token)
