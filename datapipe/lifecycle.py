"""The record of a run as the engine sees it: one interface, two implementations.

The engine tells a :class:`RunRecord` what happens to the run it executes (opened,
progressed, committing, committed, rolled back) and never asks whether it runs locally
or as a Celery chunk. :class:`LocalRecord` is the record of a local run (and of every
run that a run starts: depends and triggers, in a chunk too);
:class:`datapipe.distributed.ledger.ChunkRecord` is one chunk of a distributed run.
The state changes themselves are methods of :class:`~datapipe.models.PipelineRun` and
:class:`~datapipe.models.PipelineChunk`.
"""

from __future__ import annotations

import logging

from django.db import connections

from . import notify
from .changes import in_dry_run
from .errors.capture import message_of
from .exceptions import ErrorThresholdExceeded
from .report import COUNTS
from .sinks import deliver
from .transactions import OutsideWriter

__all__ = ["LocalRecord", "RunRecord", "describe"]

logger = logging.getLogger("datapipe")


class RunRecord:
    """What the engine reports to the record of its run. Every hook is a no-op here.

    ``run`` is the :class:`~datapipe.models.PipelineRun` the report's ``run_id`` names
    and the signals carry; ``using`` its database. ``shared_lock``: whether runs of this
    kind may hold the pipeline's lock side by side (Celery chunks of a run).
    """

    shared_lock = False
    #: Whether the chain runs the triggers right after the run (a Celery chunk runs
    #: them itself, as a step of its own ledger).
    runs_triggers = True

    def __init__(self, run, using: str):
        self.run = run
        self.using = using

    def opened(self) -> None:
        """Called inside the run's transaction, before ``prepare``. May raise to stop
        the run (it is rolled back)."""

    def earlier_counts(self) -> tuple[int, int]:
        """``(processed, errored)`` of the run before this part of it (the chunks of a
        distributed run finished so far), that error thresholds count with this part's
        own; called once, when the pipeline has a threshold."""
        return 0, 0

    def progressed(self, report, committing: bool) -> None:
        """Called between batches with the counts so far; ``committing`` when the batch
        is about to be committed (``atomic=False``). The return value is ignored."""

    def committing(self, report, context, errors) -> None:
        """Called inside the transaction after the last flush; ``errors`` is the run's
        :class:`~datapipe.errors.store.ErrorCollector`."""

    def committed(self, report, pipe) -> None:
        """Called after the transaction committed; ``pipe`` is an instance of the
        pipeline (for ``finish_run``)."""

    def rolled_back(self, report, exc: BaseException) -> None:
        """Called after the run's transaction was rolled back by ``exc`` (or the run
        could not start: a dependency failed)."""


class LocalRecord(RunRecord):
    """A run executed here: its :class:`~datapipe.models.PipelineRun` is created now.

    Live counts: on PostgreSQL, when the run's transaction is the connection's
    outermost, they are written between batches through a connection of their own, so
    other connections see them while the run goes on; otherwise (SQLite, or a run
    inside the caller's ``transaction.atomic()``) at each commit of ``atomic=False``.
    A run rolled back keeps the counts of what it committed (none for an atomic run).
    ``finish_run`` is called after the commit; if it raises, the run is marked failed
    with its message and the outputs stay.
    """

    def __init__(self, pipeline_name: str, using: str, *, parent=None, triggered_by=None,
                 prune: bool = False):
        from .models import PipelineRun

        self.prune = prune
        run = PipelineRun.start(pipeline_name, using, parent=parent, triggered_by=triggered_by)
        super().__init__(run, using)
        connection = connections[using]
        self._outside = None
        if connection.vendor == "postgresql" and not connection.in_atomic_block:
            self._outside = OutsideWriter(using)
        self._kept = dict.fromkeys(COUNTS, 0)

    def progressed(self, report, committing: bool) -> None:
        if self._outside is not None or committing:
            self.run.write_counts(report, self._outside)
        if committing:
            self._kept = self.run.counts_update(report)

    def committing(self, report, context, errors) -> None:
        if self.prune and not report.broke:  # a loop broken off did not see every item
            from .tracking import prune_run

            prune_run(self.run, self.using,
                      [(error.content_type_id, error.item_id) for error in errors.captured])

    def committed(self, report, pipe) -> None:
        self._close_outside()
        Status = self.run.Status
        for name, value in self.run.counts_update(report).items():
            setattr(self.run, name, value)
        status, message = Status.DONE, report.message
        if message:
            status = Status.FAILED
        failure = None if in_dry_run() else deliver(type(pipe), report.results, self.run,
                                                    self.using)
        if failure:  # the outputs are committed: the run fails, not its items
            status, message = Status.FAILED, failure
            report.message = message
        try:
            if not in_dry_run():  # nothing was committed: nothing to finish
                pipe.finish_run(self.run)
        except Exception as exc:
            logger.exception("finish_run of run %s of %r failed", self.run.pk,
                             self.run.pipeline_name)
            status, message = Status.FAILED, f"finish_run: {describe(exc)}"
            report.message = message
        self.run.close(status, report, message)
        report.status = status
        if status == Status.FAILED and not in_dry_run():
            notify.run_failed(self.run)

    def rolled_back(self, report, exc: BaseException) -> None:
        self._close_outside()
        self.run.close(self.run.Status.FAILED, self._kept, describe(exc))
        report.status = self.run.Status.FAILED
        if not in_dry_run():
            notify.run_failed(self.run, isinstance(exc, ErrorThresholdExceeded))

    def _close_outside(self) -> None:
        outside, self._outside = self._outside, None
        if outside is not None:
            outside.close()


def describe(exc: BaseException) -> str:
    """``exc`` as a run's message: its type and its message, storable (see
    :func:`datapipe.errors.capture.message_of`)."""
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted (KeyboardInterrupt): rolled back to its last commit"
    if isinstance(exc, ErrorThresholdExceeded):
        return message_of(exc)
    return f"{type(exc).__name__}: {message_of(exc)}"
