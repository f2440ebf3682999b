"""The inference thread: one daemon thread that runs sampling work in submission order.

Not a ``ThreadPoolExecutor``: its threads are joined when the interpreter exits, so a sampling
run still going at shutdown would hold the process open until it ends. A daemon thread's run is
abandoned instead, which is what a deadline-bound shutdown needs.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

_Work = tuple[Future[Any], Callable[..., Any], tuple[Any, ...], dict[str, Any]]


class InferenceThread(Executor):
    """A single daemon worker thread; calls run one at a time, in order."""

    def __init__(self, name: str = "mcdrop-infer") -> None:
        self._queue: queue.SimpleQueue[_Work | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._lock = threading.Lock()
        self._closed = False
        self._unfinished = 0
        """Calls submitted and not yet finished (read on the submitting thread: see idle)."""

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        """Queue ``fn(*args, **kwargs)``; a call cancelled before it starts never runs."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the inference thread is shut down")
            if not self._thread.is_alive():
                self._thread.start()
            future: Future[T] = Future()
            self._unfinished += 1
            self._queue.put((future, fn, args, kwargs))
            return future

    def idle(self) -> bool:
        """Whether every submitted call has finished. Exact for the thread that submits (the
        event loop): nothing else adds work, and a call counts as finished only once done."""
        return self._unfinished == 0

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Take no more work; cancel queued calls if asked; join only if ``wait``."""
        with self._lock:
            self._closed = True
            started = self._thread.is_alive()
        if cancel_futures:
            self._cancel_queued()
        self._queue.put(None)
        if wait and started:
            self._thread.join()

    def join(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for the thread to end (after ``shutdown``); True if it did.
        A thread still running at interpreter exit is abandoned, but torch's thread pools may
        then abort the process on their way out: join what has finished."""
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def _cancel_queued(self) -> None:
        while True:
            try:
                work = self._queue.get_nowait()
            except queue.Empty:
                return
            if work is not None:
                work[0].cancel()
                with self._lock:
                    self._unfinished -= 1

    def _work(self) -> None:
        while (work := self._queue.get()) is not None:
            future, fn, args, kwargs = work
            try:
                if not future.set_running_or_notify_cancel():
                    continue
                try:
                    result = fn(*args, **kwargs)
                except BaseException as exc:
                    future.set_exception(exc)
                else:
                    future.set_result(result)
            finally:
                with self._lock:
                    self._unfinished -= 1
