"""Progress bars on stderr: tqdm's bar on a terminal, a plain line now and then elsewhere.

A bar redraws its line with ``\\r``; written to a file or a pipe (a cron job's log) that
gives one endless line of frames. So :class:`Progress` draws tqdm's bar only when its
stream is a terminal, and otherwise writes a complete line at most every
:data:`LINE_SECONDS` and one at the end. Counts are shown as integers (``10000``, never
tqdm's ``1e+4``).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import IO

__all__ = ["LINE_SECONDS", "Progress", "iterate"]

#: Seconds between two lines of progress written to a stream that is not a terminal.
LINE_SECONDS = 10.0


def is_terminal(stream) -> bool:
    """Whether ``stream`` is a terminal (False for anything without ``isatty``)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or closed
        return False


class Progress:
    """A progress display of ``done`` out of ``total`` ``unit`` s, with counts beside.

    ``total`` may be None (unknown). Use it as a context manager, or call :meth:`close`.
    """

    def __init__(self, desc: str, unit: str, total: int | None = None,
                 file: IO[str] | None = None):
        self.desc, self.unit, self.total = desc, unit, total
        self.done = 0
        self.counts: dict[str, int] = {}
        self.file = file if file is not None else sys.stderr
        self._bar = None
        self._last_line = time.monotonic()
        if is_terminal(self.file):
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=unit, file=self.file)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        """``n`` more done."""
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
        elif time.monotonic() - self._last_line >= LINE_SECONDS:
            self._line()

    def set(self, done: int, total: int | None = None, **counts: int) -> None:
        """Show ``done`` (and ``total``, and the ``counts``, when given)."""
        self.done = int(done)
        if total is not None:
            self.total = int(total)
        if counts:
            self.counts = {name: int(value) for name, value in counts.items()}
        if self._bar is not None:
            self._bar.total = self.total
            self._bar.n = self.done
            if counts:  # one string: tqdm would print a number as 1e+4
                self._bar.set_postfix_str(self._counts_text(), refresh=False)
            self._bar.refresh()
        elif time.monotonic() - self._last_line >= LINE_SECONDS:
            self._line()

    def close(self) -> None:
        """Draw the final state (once)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self._last_line is not None:
            self._line()
        self._last_line = None

    def line(self) -> str:
        """The state as one line of text: ``flow: 250/1000 items (25%), errored=3``."""
        of = f"/{self.total}" if self.total is not None else ""
        share = f" ({self.done / self.total:.0%})" if self.total else ""
        counts = f", {self._counts_text()}" if self.counts else ""
        return f"{self.desc}: {self.done}{of} {self.unit}s{share}{counts}"

    def _counts_text(self) -> str:
        return ", ".join(f"{name}={value}" for name, value in self.counts.items())

    def _line(self) -> None:
        self.file.write(self.line() + "\n")
        self.file.flush()
        self._last_line = time.monotonic()


def iterate(iterable: Iterable, desc: str, unit: str = "item", total: int | None = None,
            file: IO[str] | None = None) -> Iterator:
    """Yield from ``iterable``, counting each value on a :class:`Progress`."""
    with Progress(desc, unit, total, file) as progress:
        for value in iterable:
            yield value
            progress.update()
