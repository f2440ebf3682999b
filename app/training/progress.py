"""A small text progress bar for long loops, drawn on stderr."""

from __future__ import annotations

import sys
from typing import TextIO


class ProgressBar:
    """``label [#######.......] 7/15 info``, redrawn in place on a terminal.

    On a stream that is not a terminal (a log file, a test capture) it writes one line at the
    first step and one at every further tenth of the way, so logs stay short.
    """

    def __init__(self, total: int, label: str, stream: TextIO | None = None, width: int = 30):
        self.total = max(1, total)
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self._tty = self.stream.isatty()
        self._last_tenth = -1

    def update(self, done: int, info: str = "") -> None:
        """Show `done` of `total` steps, with `info` after the counts."""
        filled = round(self.width * done / self.total)
        line = f"{self.label} [{'#' * filled}{'.' * (self.width - filled)}] {done}/{self.total}"
        line = f"{line} {info}".rstrip()
        if self._tty:
            self.stream.write(f"\r{line}")
        else:
            tenth = 10 * done // self.total
            if tenth == self._last_tenth:
                return
            self._last_tenth = tenth
            self.stream.write(f"{line}\n")
        self.stream.flush()

    def close(self) -> None:
        """End the bar's line on a terminal."""
        if self._tty:
            self.stream.write("\n")
            self.stream.flush()
