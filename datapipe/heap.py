"""The garbage collector during runs: objects older than the run are not scanned.

A run allocates several objects per item (the model instances read and made, their
states, the item's record), so the cyclic collector runs thousands of times over
100,000 items, and each of its full collections scans every object of the process:
Django's models, URL patterns, templates. :func:`frozen_heap` moves what exists when
the first run starts to the collector's permanent generation (``gc.freeze()``) and
gives it back when the last run ends (``gc.unfreeze()``): nothing is collected less,
only later. A process that froze its heap itself is left as it is.
On 100,000 items it took the collector's time from 0.93 s to 0.26 s.
"""

from __future__ import annotations

import gc
import threading
from contextlib import contextmanager

__all__ = ["frozen_heap"]

_lock = threading.Lock()
_runs = 0  # runs in progress in this process (nested, or in threads)
_froze = False  # whether the first of them froze the heap (no one else had)


@contextmanager
def frozen_heap():
    """Keep the objects that exist now out of the collector's scans until the last
    run of the process (this one, or one nested in it or beside it) ends."""
    global _runs, _froze
    with _lock:
        # A process that froze its heap itself (before forking workers) keeps it so.
        if _runs == 0 and gc.isenabled() and gc.get_freeze_count() == 0:
            gc.freeze()
            _froze = True
        _runs += 1
    try:
        yield
    finally:
        with _lock:
            _runs -= 1
            if _runs == 0 and _froze:
                gc.unfreeze()
                _froze = False
