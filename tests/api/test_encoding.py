from __future__ import annotations

import asyncio
import threading

from app.api.encoding import LARGE_ANSWER_VALUES, serialise


def _thread_of_encoding(values: int) -> threading.Thread:
    async def scenario() -> threading.Thread:
        return await serialise(threading.current_thread, values)

    return asyncio.run(scenario())


def test_large_answers_are_serialised_off_the_event_loop_small_ones_inline() -> None:
    loop_thread = threading.current_thread()  # asyncio.run's loop runs in this thread
    assert _thread_of_encoding(LARGE_ANSWER_VALUES) is loop_thread
    assert _thread_of_encoding(LARGE_ANSWER_VALUES + 1) is not loop_thread
