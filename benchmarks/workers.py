"""Celery workers for scenario 5, started for the benchmark and stopped after it."""

from __future__ import annotations

from contextlib import contextmanager


@contextmanager
def celery_workers(enabled: bool):
    """Run the body with the benchmark's Celery workers up (when ``enabled``)."""
    if not enabled:
        yield
        return
    raise NotImplementedError("Celery workers for the benchmark")
