"""Chunks of distributed runs, with every transition of their state.

A chunk is dispatched, then delivered (running), then committed (its work done, the
runs it triggers still to run) and done, or failed; a chunk whose message or worker
was lost is sent again. See :mod:`datapipe.distributed.ledger`.
"""

from __future__ import annotations

import os
import socket
from datetime import timedelta

from django.db import models
from django.db.models import Count, F, Max, Q
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from ..errors.text import storable
from ..report import COUNTS
from ..transactions import advisory_lock
from .runs import MESSAGE_MAX, PipelineRun, stale_after_seconds

__all__ = ["PipelineChunk"]


class ChunkQuerySet(models.QuerySet):
    """Chunk rows, with the transitions that concern several at once."""

    def worker_lost(self, stale_after: float | None = None):
        """Chunks started (running, or committed with triggers to run) whose worker gave
        no sign of life for ``stale_after`` seconds: it died, or lost its message."""
        Status = PipelineChunk.Status
        before = timezone.now() - timedelta(seconds=stale_after_seconds(stale_after))
        seen = Greatest("dispatched_at", Coalesce("heartbeat_at", "started_at", "dispatched_at"))
        return self.filter(status__in=[Status.RUNNING, Status.COMMITTED]).annotate(
            seen=seen).filter(seen__lt=before)

    def workers(self, since):
        """The workers that ran chunks here with a sign of life at ``since`` or later:
        rows of ``worker``, ``last_seen``, ``chunks`` and ``running`` (chunks running now),
        the latest seen first."""
        seen = Coalesce("heartbeat_at", "finished_at", "started_at")
        running = Count("pk", filter=Q(status=PipelineChunk.Status.RUNNING))
        return self.exclude(worker="").annotate(seen=seen).filter(seen__gte=since).values(
            "worker").annotate(last_seen=Max("seen"), chunks=Count("pk"), running=running
                               ).order_by("-last_seen")

    def mark_lost(self, status: str) -> int:
        """Mark lost the chunks of these in ``status`` (their message or their worker is
        gone, so they are to be sent again); return how many."""
        return self.filter(status=status).update(status=PipelineChunk.Status.LOST)

    def reset_for_resend(self, chunks: list) -> None:
        """Send ``chunks`` again under a new task id, counting the resend: back to
        dispatched, except a committed chunk, which keeps its work and counts (its
        triggers are what is left to do)."""
        import uuid

        Status = PipelineChunk.Status
        now = timezone.now()
        for chunk in chunks:
            chunk.task_id, chunk.dispatched_at, chunk.deliveries = str(uuid.uuid4()), now, 0
            chunk.heartbeat_at, chunk.resends = None, chunk.resends + 1
            if chunk.status == Status.COMMITTED:
                continue
            chunk.status, chunk.broke, chunk.message = Status.DISPATCHED, False, ""
            for name in COUNTS:
                setattr(chunk, name, 0)
            chunk.started_at = chunk.finished_at = chunk.context = chunk.results = None
        self.bulk_update(chunks, [
            "status", "broke", "deliveries", *COUNTS, "task_id", "dispatched_at", "message",
            "started_at", "finished_at", "context", "resends", "heartbeat_at", "results",
        ])


class PipelineChunk(models.Model):
    """One chunk of a distributed run: its items, where it stands, and its counts.

    ``items`` is the chunk's payload (see :mod:`datapipe.distributed.chunks`), read by
    the worker from this row (the task message carries ids only). The counts are
    written in the transaction that did the chunk's work, so a chunk delivered twice
    is counted once.
    """

    class Status(models.TextChoices):
        DISPATCHED = "dispatched", "dispatched"
        RUNNING = "running", "running"
        #: The chunk's work is committed; the runs it triggers are still to run.
        COMMITTED = "committed", "committed"
        DONE = "done", "done"
        FAILED = "failed", "failed"
        LOST = "lost", "lost"

    run = models.ForeignKey(PipelineRun, on_delete=models.CASCADE, related_name="chunks")
    index = models.PositiveIntegerField()
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.DISPATCHED)
    items = models.JSONField()
    size = models.PositiveIntegerField()
    processed = models.PositiveIntegerField(default=0)
    succeeded = models.PositiveIntegerField(default=0)
    continued = models.PositiveIntegerField(default=0)
    ignored = models.PositiveIntegerField(default=0)
    errored = models.PositiveIntegerField(default=0)
    retried = models.PositiveIntegerField(default=0)
    broke = models.BooleanField(default=False)
    deliveries = models.PositiveIntegerField(
        default=0,
        help_text="How many times a worker started the chunk since it was last sent "
        "(retries included).",
    )
    deliveries_total = models.PositiveIntegerField(
        default=0, help_text="Deliveries of the chunk over all its sends."
    )
    resends = models.PositiveIntegerField(
        default=0, help_text="How many times the chunk was sent again (lost or failed)."
    )
    results = models.JSONField(
        null=True, blank=True,
        help_text="The chunk's results, encoded as items, while its triggers are to run.",
    )
    task_id = models.CharField(max_length=255, blank=True)
    worker = models.CharField(max_length=255, blank=True)
    context = models.JSONField(
        null=True, blank=True, help_text="The context as the chunk left it (when JSON-encodable)."
    )
    message = models.TextField(blank=True)
    dispatched_at = models.DateTimeField()
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(
        null=True, blank=True, help_text="Last sign of life of the worker running it."
    )
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = ChunkQuerySet.as_manager()

    class Meta:
        ordering = ["run", "index"]
        constraints = [
            models.UniqueConstraint(fields=["run", "index"], name="datapipe_chunk_unique_index")
        ]

    def __str__(self):
        return f"chunk {self.index} of run {self.run_id} ({self.status})"

    def _row(self):
        return type(self).objects.using(self._state.db).filter(pk=self.pk)

    def start_delivery(self) -> str | None:
        """Count a delivery; return what it is to do: ``"run"`` the chunk (now marked
        running), run its ``"triggers"`` (its work is committed), or None (finished).

        ``deliveries`` then counts the deliveries since the chunk was last sent.
        """
        Status = self.Status
        now = timezone.now()
        seen = {"deliveries": F("deliveries") + 1, "deliveries_total": F("deliveries_total") + 1,
                "heartbeat_at": now, "worker": f"{socket.gethostname()}:{os.getpid()}"}
        todo = None
        if self._row().filter(status__in=[Status.DISPATCHED, Status.RUNNING, Status.LOST]).update(
                status=Status.RUNNING, started_at=now, **seen):
            todo = "run"
        elif self._row().filter(status=Status.COMMITTED).update(**seen):
            todo = "triggers"
        if todo is not None:
            self.refresh_from_db()
        return todo

    def lock_running(self) -> bool:
        """Take the chunk's lock for this transaction; True if it is still running.

        On PostgreSQL an advisory lock, not a row lock, so that the worker's heartbeat
        can still write the row while the chunk runs.
        """
        advisory_lock(self._state.db, f"chunk:{self.pk}")
        status = self._row().values_list("status", flat=True).first()
        return status == self.Status.RUNNING

    def finish(self, counts, context, message: str = "", results=None,
               triggers: bool = False) -> None:
        """End the chunk's work and fold its counts into the run: failed (with
        ``message``), committed (``triggers`` to run, on ``results``), or done."""
        values = self.run.counts_update(counts)
        Status = self.Status
        status = Status.FAILED if message else Status.COMMITTED if triggers else Status.DONE
        # The run's row first, then the chunk's: the order resend locks them in.
        self.run.add_chunk(counts, done=status != Status.COMMITTED)
        self._row().update(status=status, **values, context=context, results=results,
                           message=storable(message, MESSAGE_MAX), finished_at=timezone.now())

    def triggers_done(self, keep_results: bool = False) -> bool:
        """Mark a committed chunk done once its triggers ran; True if this call did.
        ``keep_results``: the results stay on the row (for the run's sinks)."""
        from django.db import transaction

        with transaction.atomic(using=self._state.db):
            self.run._row().select_for_update().values_list("pk").first()
            cleared = {} if keep_results else {"results": None}
            done = self._row().filter(status=self.Status.COMMITTED).update(
                status=self.Status.DONE, **cleared, finished_at=timezone.now())
            if done:
                self.run.add_done_chunk()
        return bool(done)

    def beat(self) -> None:
        """Record a sign of life of the worker running the chunk."""
        self._row().update(heartbeat_at=timezone.now())
