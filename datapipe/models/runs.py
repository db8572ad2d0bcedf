"""Run records and chunk rows, with every transition of their state.

This module is the one owner of :class:`PipelineRun` and :class:`PipelineChunk`
state: runs are started, progressed, closed and finished here, chunks delivered,
locked, done, failed and reset here; progress is computed here
(:meth:`PipelineRun.progress`) for the run handle, the command line and the admin.
"""

from __future__ import annotations

import os
import socket

from django.db import models
from django.db.models import Count, F
from django.utils import timezone

from ..report import COUNTS

__all__ = ["PipelineChunk", "PipelineRun", "by_status"]


class RunQuerySet(models.QuerySet):
    """Run records; :meth:`roots` are the runs that no other run started."""

    def roots(self):
        """Runs started by a caller, not by another run (depends, triggers, chunks)."""
        return self.filter(parent__isnull=True)


class PipelineRun(models.Model):
    """One run of a pipeline, local or distributed: status, counts and timings.

    ``parent`` is the run that started this one (as a dependency, a trigger, or inside
    one of its Celery chunks); ``triggered_by`` is the run whose results a triggered
    run processes.
    """

    class Status(models.TextChoices):
        RUNNING = "running", "running"
        DONE = "done", "done"
        FAILED = "failed", "failed"

    pipeline_name = models.CharField(max_length=200, db_index=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.RUNNING)
    distributed = models.BooleanField(default=False)
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="children",
        help_text="The run that started this one (depends, triggers, inside chunks).",
    )
    triggered_by = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="triggered"
    )
    processed = models.PositiveBigIntegerField(default=0)
    succeeded = models.PositiveBigIntegerField(default=0)
    continued = models.PositiveBigIntegerField(default=0)
    ignored = models.PositiveBigIntegerField(default=0)
    errored = models.PositiveBigIntegerField(default=0)
    broke = models.BooleanField(default=False)
    chunks_total = models.PositiveIntegerField(default=1)
    chunks_done = models.PositiveIntegerField(default=0)
    message = models.TextField(blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Distributed runs: what every chunk is run with (context, options, queue), read by
    # the workers and by resend; see datapipe.distributed.
    dispatch = models.JSONField(default=dict, blank=True)

    objects = RunQuerySet.as_manager()

    class Meta:
        ordering = ["-started_at", "-id"]

    def __str__(self):
        return f"{self.pipeline_name} #{self.pk} ({self.status})"

    @property
    def elapsed(self):
        """Seconds from start to finish (or None while running)."""
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()

    # Transitions ------------------------------------------------------------------------

    @classmethod
    def start(cls, pipeline_name: str, using: str, *, parent=None, triggered_by=None,
              distributed=False, chunks_total=1, dispatch=None) -> PipelineRun:
        """Create the record of a run that starts now."""
        return cls.objects.using(using).create(
            pipeline_name=pipeline_name, parent=parent, triggered_by=triggered_by,
            distributed=distributed, chunks_total=chunks_total, dispatch=dispatch or {},
        )

    def counts_update(self, counts: dict) -> dict:
        """The column values of ``counts`` (a report or a dict of :data:`COUNTS`)."""
        values = {name: _count(counts, name) for name in COUNTS}
        values["broke"] = bool(_count(counts, "broke"))
        return values

    def close(self, status: str, counts, message: str = "") -> None:
        """End a local run: its final counts, status and message."""
        values = self.counts_update(counts)
        for name, value in values.items():
            setattr(self, name, value)
        self.status, self.message = status, message[:2000]
        self.chunks_done, self.finished_at = self.chunks_total, timezone.now()
        self.save(update_fields=[*values, "status", "message", "chunks_done", "finished_at"])

    def add_chunk(self, counts, chunk_failed: bool = False) -> None:
        """Fold a finished chunk's counts into the run (in the chunk's transaction)."""
        values = self.counts_update(counts)
        added = {name: F(name) + values[name] for name in COUNTS}
        if values["broke"]:
            added["broke"] = True
        type(self).objects.using(self._state.db).filter(pk=self.pk).update(
            chunks_done=F("chunks_done") + 1, **added
        )

    def claim_finish(self) -> bool:
        """True for exactly one caller once every chunk is finished (no chord needed)."""
        return bool(type(self).objects.using(self._state.db).filter(
            pk=self.pk, finished_at__isnull=True, chunks_done__gte=F("chunks_total"),
        ).update(finished_at=timezone.now()))

    def set_outcome(self, status: str, message: str = "") -> None:
        """Write the final status of a distributed run (after :meth:`claim_finish`)."""
        type(self).objects.using(self._state.db).filter(pk=self.pk).update(
            status=status, message=message[:2000])
        self.status, self.message = status, message[:2000]

    def reopen(self, failed_chunks: list) -> None:
        """Open a distributed run again for chunks that are re-sent; failed ones'
        counts are taken back out."""
        for name in COUNTS:
            setattr(self, name, getattr(self, name) - sum(getattr(c, name) for c in failed_chunks))
        self.chunks_done -= len(failed_chunks)
        self.status, self.finished_at, self.message = self.Status.RUNNING, None, ""
        self.save()

    # Progress -----------------------------------------------------------------------------

    def progress(self) -> dict:
        """Where the run stands: status, item counts, chunks by status, child runs.

        The one computation of progress: the run handle, ``datapipe status`` and the
        admin all show this.
        """
        chunks = {}
        if self.distributed:
            chunks = dict(self.chunks.values_list("status").annotate(n=Count("pk")).order_by())
        children = dict(self.children.values_list("status").annotate(n=Count("pk")).order_by())
        total = self.chunks_total
        return {
            "run_id": self.pk,
            "pipeline": self.pipeline_name,
            "status": self.status,
            "distributed": self.distributed,
            "chunks_total": total,
            "chunks_done": self.chunks_done,
            "chunks": chunks,
            "children": children,
            **{name: getattr(self, name) for name in COUNTS},
            "broke": self.broke,
            "finished": self.status != self.Status.RUNNING,
            "message": self.message,
            "elapsed": ((self.finished_at or timezone.now()) - self.started_at).total_seconds(),
            "fraction": (self.chunks_done / total if total else 1.0) if self.distributed
            else (1.0 if self.status != self.Status.RUNNING else None),
        }

    def tree(self, depth: int = 5, per_run: int = 50, lines: int = 500):
        """The runs this run started, depth first: ``(level, child, None)`` for a listed
        run (level 0: this run's children), ``(level, None, n)`` for ``n`` runs left out.

        Goes ``depth`` levels down, lists ``per_run`` children of a run and ``lines`` runs
        in all; the admin's run page and ``datapipe status`` show it.
        """
        budget = [lines]

        def walk(parent, level):
            children = parent.children.order_by("started_at", "pk")
            limit = max(min(per_run, budget[0]), 0)
            fetched = list(children[:limit]) if limit else []
            listed = 0
            for child in fetched:
                if budget[0] <= 0:
                    break
                budget[0] -= 1
                listed += 1
                yield level, child, None
                if level + 1 < depth:
                    yield from walk(child, level + 1)
                elif hidden := child.children.count():
                    yield level + 1, None, hidden
            if listed == limit or listed < len(fetched):
                more = children.count() - listed
                if more > 0:
                    yield level, None, more

        return walk(self, 0)


def by_status(counts: dict) -> str:
    """``{"done": 3, "failed": 1}`` as ``"3 done, 1 failed"``."""
    return ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))


def _count(counts, name: str):
    return counts.get(name, 0) if isinstance(counts, dict) else getattr(counts, name)


class ChunkQuerySet(models.QuerySet):
    """Chunk rows, with the transitions that concern several at once."""

    def reset_for_resend(self, chunks: list) -> None:
        """Put ``chunks`` back to dispatched, with a new task id; count the resend."""
        import uuid

        Status = PipelineChunk.Status
        now = timezone.now()
        for chunk in chunks:
            chunk.status, chunk.broke, chunk.deliveries = Status.DISPATCHED, False, 0
            for name in COUNTS:
                setattr(chunk, name, 0)
            chunk.task_id, chunk.dispatched_at, chunk.message = str(uuid.uuid4()), now, ""
            chunk.started_at = chunk.finished_at = chunk.context = None
            chunk.resends += 1
        self.bulk_update(chunks, [
            "status", "broke", "deliveries", *COUNTS, "task_id", "dispatched_at", "message",
            "started_at", "finished_at", "context", "resends",
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
    broke = models.BooleanField(default=False)
    deliveries = models.PositiveIntegerField(
        default=0,
        help_text="How many times a worker started the chunk since it was last sent "
        "(retries included).",
    )
    resends = models.PositiveIntegerField(
        default=0, help_text="How many times the chunk was sent again after it was lost."
    )
    task_id = models.CharField(max_length=255, blank=True)
    worker = models.CharField(max_length=255, blank=True)
    context = models.JSONField(
        null=True, blank=True, help_text="The context as the chunk left it (when JSON-encodable)."
    )
    message = models.TextField(blank=True)
    dispatched_at = models.DateTimeField()
    started_at = models.DateTimeField(null=True, blank=True)
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

    def start_delivery(self) -> int | None:
        """Count a delivery and mark the chunk running; None when it is finished already.

        Returns how many times the chunk was delivered since it was last (re)sent.
        """
        Status = self.Status
        started = self._row().exclude(status__in=[Status.DONE, Status.FAILED]).update(
            status=Status.RUNNING, deliveries=F("deliveries") + 1, started_at=timezone.now(),
            worker=f"{socket.gethostname()}:{os.getpid()}",
        )
        if not started:
            return None
        self.refresh_from_db(fields=["deliveries", "status", "started_at", "worker"])
        return self.deliveries

    def lock_running(self) -> bool:
        """Lock the row (in the chunk's transaction); True if it is still running."""
        status = self._row().select_for_update().values_list("status", flat=True).first()
        return status == self.Status.RUNNING

    def finish(self, counts, context, message: str = "") -> None:
        """Mark the chunk done (or failed, with ``message``) and fold its counts into the run."""
        values = self.run.counts_update(counts)
        status = self.Status.FAILED if message else self.Status.DONE
        self._row().update(status=status, **values, context=context, message=message[:2000],
                           finished_at=timezone.now())
        self.run.add_chunk(counts)
