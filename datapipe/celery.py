"""Configuring a project's Celery app for datapipe's workers.

Call :func:`configure` in the module that creates the app::

    app = Celery("proj")
    app.config_from_object("django.conf:settings", namespace="CELERY")
    datapipe.celery.configure(app)
    app.autodiscover_tasks()

It also puts the sweep (:mod:`datapipe.distributed.sweep`) and every pipeline declared
with ``schedule=`` (:mod:`datapipe.schedules`) in the beat schedule: run ``celery beat``
(or a worker with ``-B``) so that runs heal by themselves and scheduled pipelines run.

Celery's Django fix-up closes every database connection before and after every task,
so each chunk pays a new connection (and PostgreSQL a new backend process): measured
at 15-25% of a distributed run of small chunks. :func:`configure` keeps connections
open across tasks and closes only those that broke; ``worker_max_tasks_per_child``
recycles them with the process.
"""

from __future__ import annotations

import logging

from celery import signals
from celery.fixups.django import DjangoFixup
from django.db import connections

logger = logging.getLogger("datapipe")

__all__ = ["close_broken_connections", "configure", "keep_database_connections",
           "schedule_pipelines", "schedule_sweep"]


def configure(app, sweep_queue: str | None = None, schedule_queue: str | None = None) -> None:
    """Make ``app``'s workers fit for datapipe: JSON accepted, connections kept, and the
    sweep (task ``datapipe.sweep``) in the beat schedule every ``DATAPIPE["SWEEP_EVERY"]``
    seconds, sent to ``sweep_queue`` (default: Celery's default queue); the scheduled
    pipelines too, sent to ``schedule_queue``, once beat starts (the pipes modules are
    read then)."""
    accepted = list(app.conf.accept_content or [])
    if "json" not in accepted:
        app.conf.accept_content = [*accepted, "json"]
    keep_database_connections(app)
    schedule_sweep(app, sweep_queue)

    def on_beat_init(sender=None, **kwargs):
        # Beat has set Django up (the pipes modules can be read) and built its scheduler
        # from beat_schedule already: the entries go to both.
        entries = schedule_pipelines(app, schedule_queue)
        scheduler = getattr(sender, "scheduler", None)
        if scheduler is not None and entries:
            scheduler.update_from_dict(entries)

    signals.beat_init.connect(on_beat_init, weak=False)


def schedule_pipelines(app, queue: str | None = None) -> dict:
    """Put each pipeline declared with ``schedule=`` in ``app.conf.beat_schedule`` as
    ``datapipe:<name>`` (task ``datapipe.scheduled``); return those entries. Needs the
    app registry ready (beat's start-up has set Django up)."""
    from .registry import registry

    entries = {}
    for name, schedule in registry.schedules().items():
        entry = {"task": "datapipe.scheduled", "schedule": schedule, "args": [name]}
        if queue:
            entry["options"] = {"queue": queue}
        entries[f"datapipe:{name}"] = entry
    app.conf.beat_schedule = {**(app.conf.beat_schedule or {}), **entries}
    logger.info("Scheduled pipelines in the beat schedule: %s", ", ".join(entries) or "none")
    return entries


def schedule_sweep(app, queue: str | None = None) -> None:
    """Put ``datapipe.sweep`` in ``app.conf.beat_schedule`` as ``datapipe:sweep``."""
    from . import conf

    entry = {"task": "datapipe.sweep", "schedule": float(conf.get("SWEEP_EVERY"))}
    if queue:
        entry["options"] = {"queue": queue}
    app.conf.beat_schedule = {**(app.conf.beat_schedule or {}), "datapipe:sweep": entry}


def keep_database_connections(app) -> None:
    """Stop the Django fix-up of ``app`` from closing connections around every task.

    The fix-up connects its handlers when the worker starts; ours runs after it (it is
    connected later) and disconnects the per-task ones, keeping the rest (connections
    inherited by pool processes are still dropped when they start).
    """

    def on_worker_init(**kwargs):
        for fixup in getattr(app, "_fixups", None) or ():
            if isinstance(fixup, DjangoFixup):
                worker_fixup = fixup.worker_fixup
                signals.task_prerun.disconnect(worker_fixup.on_task_prerun)
                signals.task_postrun.disconnect(worker_fixup.on_task_postrun)
        signals.task_postrun.connect(close_broken_connections, weak=False)

    signals.worker_init.connect(on_worker_init, weak=False)


def close_broken_connections(**kwargs) -> None:
    """After a task: close connections that saw an error and no longer work.

    Celery signal handler; the return value is ignored.
    """
    for connection in connections.all(initialized_only=True):
        if connection.connection is None:
            continue
        if connection.errors_occurred and not connection.is_usable():
            connection.close()
        else:
            connection.errors_occurred = False
