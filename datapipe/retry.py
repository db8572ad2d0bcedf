"""``Retry``: try an item again, later, when it fails with a transient exception.

A pipe declares ``retry = Retry(on=(TimeoutError,), attempts=4, backoff=0.5)``; a
session may override it for the pipelines it runs (``get_session(retry=...)``). The
engine keeps the failed items in a queue ordered by when each is due and goes on with
the next items meanwhile (:class:`RetryQueue`): no item sleeps in the loop.
"""

from __future__ import annotations

import heapq
import importlib
import itertools
import time
from dataclasses import dataclass

__all__ = ["Retry", "RetryQueue"]


@dataclass(frozen=True)
class Retry:
    """Try an item failing with one of ``on`` up to ``attempts`` times in all (the first
    try included), waiting ``backoff * 2 ** (n - 1)`` seconds before the n-th retry,
    never more than ``max_delay``. Only the last failure is collected as an error row
    (with ``attempts``); ``report.retried`` counts the retries done.
    """

    on: tuple[type[BaseException], ...] = (Exception,)
    attempts: int = 3
    backoff: float = 1.0
    max_delay: float = 60.0

    def __init__(self, on=(Exception,), attempts=3, backoff=1.0, max_delay=60.0):
        on = (on,) if isinstance(on, type) else tuple(on) if isinstance(on, (tuple, list)) else on
        if not isinstance(on, tuple) or not on or not all(
                isinstance(cls, type) and issubclass(cls, Exception) for cls in on):
            raise TypeError(
                f"Retry(on=...) takes an exception class or a tuple of them, not {on!r}")
        if not isinstance(attempts, int) or isinstance(attempts, bool) or attempts < 1:
            raise ValueError(f"Retry(attempts=...) must be an integer of 1 or more (every try "
                             f"counts, the first included), not {attempts!r}")
        for name, value in (("backoff", backoff), ("max_delay", max_delay)):
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not (
                    0 <= value < float("inf")):
                raise ValueError(f"Retry({name}=...) must be a number of seconds >= 0, "
                                 f"not {value!r}")
        object.__setattr__(self, "on", on)
        object.__setattr__(self, "attempts", attempts)
        object.__setattr__(self, "backoff", float(backoff))
        object.__setattr__(self, "max_delay", float(max_delay))

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (1 for the first retry)."""
        return min(self.backoff * 2 ** (retry - 1), self.max_delay)

    def applies(self, exc: BaseException, tries: int) -> bool:
        """True when an item that failed with ``exc`` on try ``tries`` is tried again."""
        return tries < self.attempts and isinstance(exc, self.on)

    # Sent with Celery chunks (a session's override), as JSON.

    def as_json(self) -> dict:
        """This policy as JSON (exception classes by dotted path)."""
        return {"on": [f"{cls.__module__}.{cls.__qualname__}" for cls in self.on],
                "attempts": self.attempts, "backoff": self.backoff, "max_delay": self.max_delay}

    @classmethod
    def from_json(cls, data: dict) -> Retry:
        """The policy :meth:`as_json` wrote (its exception classes imported again)."""
        return cls(on=tuple(_import(path) for path in data["on"]), attempts=data["attempts"],
                   backoff=data["backoff"], max_delay=data["max_delay"])


def _import(path: str) -> type:
    module, _, name = path.rpartition(".")
    found = importlib.import_module(module or "builtins")
    for part in name.split("."):
        found = getattr(found, part)
    return found


class RetryQueue(list):
    """Items waiting for their next try, by when each is due (a heap). Empty, it is
    false: the engine's check between items is a list's truth test."""

    _order = itertools.count()  # ties: first failed, first retried

    def push(self, due: float, entry) -> None:
        """Hold ``entry`` until the monotonic time ``due``."""
        heapq.heappush(self, (due, next(self._order), entry))

    def pop_due(self, now: float | None = None) -> list:
        """The entries due by ``now`` (default: the current monotonic time), in order."""
        now = time.monotonic() if now is None else now
        due = []
        while self and self[0][0] <= now:
            due.append(heapq.heappop(self)[2])
        return due

    def wait_next(self) -> list:
        """Sleep until the first entry is due (when nothing else is left to do); return
        the entries due then."""
        if not self:
            return []
        time.sleep(max(self[0][0] - time.monotonic(), 0))
        return self.pop_due()
