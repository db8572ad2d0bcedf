"""``Periodic``: call a function every few seconds on a thread of its own while a block
runs, on a database connection of that thread's own (the heartbeat of a Celery chunk, the
renewal of a scheduled run's lease).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from django.db import InterfaceError, OperationalError, connections

__all__ = ["Periodic"]

logger = logging.getLogger("datapipe")


class Periodic:
    """While the ``with`` block runs, call ``action()`` every ``every`` seconds.

    A database connection error closes the thread's connections (the next call opens a
    new one); any other error is logged and the calls go on. The thread's connections
    are closed when the block ends.
    """

    def __init__(self, action: Callable[[], object], every: float, name: str):
        self.action, self.every = action, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        try:
            while not self._stop.wait(self.every):
                try:
                    self.action()
                except (OperationalError, InterfaceError):  # away: try again next time
                    connections.close_all()
                except Exception:
                    logger.exception("%s failed", self._thread.name)
        finally:
            connections.close_all()
