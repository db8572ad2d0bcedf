"""Run records, with every transition of their state.

This module (with :mod:`.chunks` for the chunks of distributed runs) is the one owner
of run state: runs are started, progressed, closed and finished here; progress is
computed here (:meth:`PipelineRun.progress`) for the run handle, the command line and
the admin.
"""

from __future__ import annotations

from datetime import timedelta

from django.db import models
from django.db.models import Count, F, Max, Sum
from django.db.models.functions import Coalesce, Greatest, TruncDay, TruncHour
from django.utils import timezone

from .. import conf
from ..errors.text import storable
from ..report import COUNTS

__all__ = ["MESSAGE_MAX", "PipelineRun", "by_status", "stale_after_seconds"]

#: Characters of a run's or a chunk's message kept (escaped and cleansed as error text).
MESSAGE_MAX = 2000


class RunQuerySet(models.QuerySet):
    """Run records; :meth:`roots` are the runs that no other run started."""

    def roots(self):
        """Runs started by a caller, not by another run (depends, triggers, chunks)."""
        return self.filter(parent__isnull=True)

    def stale(self, stale_after: float | None = None):
        """Distributed runs still running that stopped moving: no chunk of theirs sent,
        started, finished or with a heartbeat for ``stale_after`` seconds (default
        ``DATAPIPE["STALE_AFTER"]``)."""
        before = timezone.now() - timedelta(seconds=stale_after_seconds(stale_after))
        sent = Max("chunks__dispatched_at")
        moved = Greatest(*(Coalesce(Max(f"chunks__{name}"), sent) for name in (
            "dispatched_at", "started_at", "finished_at", "heartbeat_at")))
        return self.filter(status=PipelineRun.Status.RUNNING, distributed=True).annotate(
            last_moved=Coalesce(moved, F("started_at"))).filter(last_moved__lt=before)

    def throughput(self, since, unit: str = "hour"):
        """Items processed and errored per pipeline and ``unit`` (``"hour"`` or ``"day"``)
        by the runs here that ended (or started, while running) at ``since`` or later:
        rows of ``pipeline_name``, ``period``, ``processed``, ``errored``."""
        trunc = {"hour": TruncHour, "day": TruncDay}[unit]
        return self.annotate(ended=Coalesce("finished_at", "started_at")).filter(
            ended__gte=since).values("pipeline_name", period=trunc("ended")).annotate(
            processed=Sum("processed"), errored=Sum("errored")).order_by("period", "pipeline_name")


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
    retried = models.PositiveBigIntegerField(default=0, help_text="Retries done (Pipe.retry).")
    broke = models.BooleanField(default=False)
    chunks_total = models.PositiveIntegerField(default=1)
    chunks_done = models.PositiveIntegerField(default=0)
    message = models.TextField(blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Distributed runs: what every chunk is run with (context, options, queue), read by
    # the workers and by resend; see datapipe.distributed.
    dispatch = models.JSONField(default=dict, blank=True)
    #: Where the run's sinks wrote its results (URLs), see datapipe.sinks.
    locations = models.JSONField(default=list, blank=True)

    objects = RunQuerySet.as_manager()

    class Meta:
        ordering = ["-started_at", "-id"]
        permissions = [("resend_pipelinerun", "Can resend the lost chunks of pipeline runs")]

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
        self.status, self.message = status, storable(message, MESSAGE_MAX)
        self.chunks_done, self.finished_at = self.chunks_total, timezone.now()
        self.save(update_fields=[*values, "status", "message", "chunks_done", "finished_at"])

    def add_chunk(self, counts, done: bool = True) -> None:
        """Fold a chunk's counts into the run (in the chunk's transaction); count the
        chunk done unless its triggers are still to run (:meth:`add_done_chunk`)."""
        values = self.counts_update(counts)
        added = {name: F(name) + values[name] for name in COUNTS}
        if values["broke"]:
            added["broke"] = True
        if done:
            added["chunks_done"] = F("chunks_done") + 1
        self._row().update(**added)

    def add_done_chunk(self) -> None:
        """Count one more chunk done (its triggers have run)."""
        self._row().update(chunks_done=F("chunks_done") + 1)

    def _row(self):
        return type(self).objects.using(self._state.db).filter(pk=self.pk)

    def claim_finish(self, stale_after: float | None = None) -> bool:
        """True for exactly one caller once every chunk is finished (no chord needed).

        With ``stale_after`` (seconds), a claim older than that whose ``finish_run``
        never ended (its worker died) is claimed again.
        """
        runs = self._row().filter(status=self.Status.RUNNING, chunks_done__gte=F("chunks_total"))
        if stale_after is None:
            runs = runs.filter(finished_at__isnull=True)
        else:
            runs = runs.filter(finished_at__lt=timezone.now() - timedelta(seconds=stale_after))
        return bool(runs.update(finished_at=timezone.now()))

    def write_counts(self, counts, outside=None) -> None:
        """Write the counts so far of a running run: through ``outside`` (an
        :class:`~datapipe.transactions.OutsideWriter`, seen by other connections at once)
        or in the current transaction."""
        values = self.counts_update(counts)
        if outside is not None:
            outside.update(type(self), self.pk, values)
        else:
            self._row().update(**values)

    def fail(self, message: str) -> None:
        """End a run that could not go on (its dispatch failed): failed, with ``message``."""
        self._row().update(status=self.Status.FAILED, message=storable(message, MESSAGE_MAX),
                           finished_at=timezone.now())

    def abandon_running_children(self) -> int:
        """Mark failed the runs this run started that are still running although it is
        ending (their worker died, and their chunk ran again); return how many."""
        return self.children.filter(status=self.Status.RUNNING).update(
            status=self.Status.FAILED, finished_at=timezone.now(),
            message="abandoned: the worker running it stopped, and its chunk ran again")

    def set_outcome(self, status: str, message: str = "") -> None:
        """Write the final status of a distributed run (after :meth:`claim_finish`)."""
        type(self).objects.using(self._state.db).filter(pk=self.pk).update(
            status=status, message=storable(message, MESSAGE_MAX))
        self.status, self.message = status, storable(message, MESSAGE_MAX)

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
        """Where the run stands: status, item counts, chunks by status, child runs,
        ``items_per_second`` and ``eta`` (seconds left, for a running distributed run).

        The one computation of progress: the run handle, ``datapipe status`` and the
        admin all show this (:meth:`progress_of` for many runs at once).
        """
        return type(self).progress_of([self])[self.pk]

    @classmethod
    def progress_of(cls, runs) -> dict:
        """:meth:`progress` of each of ``runs`` by primary key, in three queries at most
        whatever their number."""
        runs = list(runs)
        if not runs:
            return {}
        using = runs[0]._state.db
        figures = {run.pk: ({}, {}) for run in runs}
        distributed = [run.pk for run in runs if run.distributed]
        if distributed:
            chunks = cls.chunks.rel.related_model.objects.using(using).filter(
                run__in=distributed).values_list("run", "status").annotate(n=Count("pk"))
            for run_id, status, n in chunks.order_by():
                figures[run_id][0][status] = n
        children = cls.objects.using(using).filter(parent__in=list(figures)).values_list(
            "parent", "status").annotate(n=Count("pk"))
        for run_id, status, n in children.order_by():
            figures[run_id][1][status] = n
        running = [run.pk for run in runs if run.distributed and run.status == cls.Status.RUNNING]
        stale = set(cls.objects.using(using).stale().filter(pk__in=running).values_list(
            "pk", flat=True)) if running else set()
        return {run.pk: run._progress(*figures[run.pk], run.pk in stale) for run in runs}

    def _progress(self, chunks: dict, children: dict, stale: bool) -> dict:
        total = self.chunks_total
        elapsed = ((self.finished_at or timezone.now()) - self.started_at).total_seconds()
        fraction = ((self.chunks_done / total if total else 1.0) if self.distributed
                    else (1.0 if self.status != self.Status.RUNNING else None))
        running = self.status == self.Status.RUNNING
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
            "finished": not running,
            "stale": stale,
            "message": self.message,
            "elapsed": elapsed,
            "fraction": fraction,
            "items_per_second": self.processed / elapsed if elapsed > 0 else 0.0,
            "eta": (elapsed * (1 - fraction) / fraction
                    if running and self.distributed and fraction else None),
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


def stale_after_seconds(value: float | None) -> float:
    return conf.get("STALE_AFTER") if value is None else value


def _count(counts, name: str):
    return counts.get(name, 0) if isinstance(counts, dict) else getattr(counts, name)
