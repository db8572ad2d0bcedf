"""Scheduled runs: what the task ``datapipe.scheduled`` does, and the list of schedules.

A scheduled run processes the pipeline's ``source()`` on the worker. It is skipped
(logged, counted on its lease, signal ``scheduled_run_skipped``) while the previous run
of the pipeline still runs. The lock is a lease
(:class:`~datapipe.models.PipelineLease`) renewed by the running worker every third of
``DATAPIPE["SCHEDULE_LEASE"]`` seconds: a worker that dies frees it when it expires.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from datetime import datetime, timedelta

from django.utils import timezone

from . import conf, signals
from .periodic import Periodic
from .registry import registry
from .schedules import describe
from .session import get_session

__all__ = ["lease_name", "listing", "run_scheduled"]

logger = logging.getLogger("datapipe")


def listing(now: datetime | None = None) -> list[dict]:
    """Each scheduled pipeline: ``pipeline``, ``schedule`` (text), ``last_run`` (the
    start of its latest run, or None), ``next_due`` (when beat sends it next, judged
    from that run or from now) and ``running`` (whether a scheduled run holds its lease).
    """
    from .models import PipelineLease, PipelineRun

    now = now or timezone.now()
    held = set(PipelineLease.objects.filter(expires_at__gte=now).values_list("name", flat=True))
    rows = []
    for name, value in sorted(registry.schedules().items()):
        last = PipelineRun.objects.roots().filter(pipeline_name=name).order_by(
            "-started_at").values_list("started_at", flat=True).first()
        rows.append({
            "pipeline": name,
            "schedule": describe(value),
            "last_run": last,
            "next_due": now + max(value.remaining_estimate(last or now), timedelta(0)),
            "running": lease_name(name) in held,
        })
    return rows


def lease_name(pipeline_name: str) -> str:
    return f"schedule:{pipeline_name}"


def run_scheduled(name: str) -> dict:
    """Run ``name`` over its ``source()`` unless its previous scheduled run still runs
    (then ``{"skipped": True}``); the task ``datapipe.scheduled``."""
    from .models import PipelineLease

    cls = registry.get(name)
    lease, seconds = lease_name(name), float(conf.get("SCHEDULE_LEASE"))
    holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    if not PipelineLease.acquire(lease, holder, seconds):
        logger.warning("Scheduled run of %r skipped: its previous run is still running", name)
        signals.scheduled_run_skipped.send(cls, pipeline=name)
        return {"pipeline": name, "skipped": True}
    def renew():
        if not PipelineLease.renew(lease, holder, seconds):
            logger.error("Lease %s lost while its run goes on", lease)

    try:
        with Periodic(renew, seconds / 3, f"datapipe-lease-{name}"):
            report = get_session(progress=False).run(name)
    finally:
        PipelineLease.release(lease, holder)
    return {"pipeline": name, "skipped": False, "run_id": report.run_id,
            "processed": report.processed, "errored": report.errored}
