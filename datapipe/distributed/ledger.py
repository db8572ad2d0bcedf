"""The record of one chunk of a distributed run, and the end of the run after its last.

:class:`ChunkRecord` is the :class:`~datapipe.lifecycle.RunRecord` of a chunk. A chunk
goes dispatched -> running -> (committed ->) done, or failed:

* its work, its error rows, its row turning ``committed`` (or ``done`` when nothing is
  triggered) and its counts added to the run commit in one transaction, so a chunk
  delivered again after it committed finds itself done and is skipped;
* the runs it triggers then run on its results, which the commit stored on the row: a
  delivery that finds the chunk ``committed`` (its worker died, or lost the database)
  runs them again (reparse makes that replace, not duplicate), and the chunk turns
  ``done`` after them. The run counts a chunk done only then, so ``wait()`` covers them.

:func:`finish_if_complete` lets exactly one worker call the pipeline's ``finish_run``
once every chunk is done.
"""

from __future__ import annotations

import logging

from django.db import transaction

from .. import conf, notify
from ..errors.store import ErrorCollector
from ..exceptions import DatapipeError, ErrorThresholdExceeded, ItemNotSerializable
from ..lifecycle import RunRecord, describe
from ..pipe import PipeState
from ..registry import registry
from ..thresholds import Thresholds
from .chunks import encode_chunks, json_copy
from .outputs import finish_outputs, keeps_results

__all__ = [
    "ChunkAlreadyDone", "ChunkFailed", "ChunkGivenUp", "ChunkRecord", "finish_if_complete",
]

logger = logging.getLogger("datapipe")


class ChunkAlreadyDone(Exception):
    """Internal: this delivery of a chunk found it finished by an earlier one."""


class ChunkGivenUp(DatapipeError):
    """A chunk was delivered again and again without finishing: its items are errors."""


class ChunkFailed(DatapipeError):
    """A chunk failed as a whole (e.g. ``prepare`` raised): its items are errors."""


class ChunkRecord(RunRecord):
    """One delivery of one chunk, as the engine sees it.

    :meth:`opened` takes the chunk's lock inside the chunk's transaction, so a second
    delivery of the same chunk waits, then finds it done; :meth:`committing` writes the
    chunk's error rows, ends its work and adds its counts to the run in that same
    transaction. Chunks of a run hold their pipeline's lock side by side; the worker
    runs the chunk's triggers after the commit (see the module docstring).
    """

    shared_lock = True
    runs_triggers = False

    def __init__(self, chunk, using: str):
        super().__init__(chunk.run, using)
        self.chunk = chunk

    def start(self, retries: int) -> str | None:
        """Count this delivery; return ``"run"``, ``"triggers"`` or None (finished).

        Raises :class:`ChunkGivenUp` when the chunk was delivered more than
        ``CELERY_MAX_REDELIVERIES`` times beyond its retries without finishing.
        """
        todo = self.chunk.start_delivery()
        # Each message (the first and each retry) is delivered once when all goes well;
        # deliveries beyond that are redeliveries after a worker died.
        if todo and self.chunk.deliveries - 1 - retries > conf.get("CELERY_MAX_REDELIVERIES"):
            raise ChunkGivenUp(
                f"The chunk was delivered {self.chunk.deliveries} times without finishing: "
                "it keeps killing its worker (or outlives the broker's visibility timeout)."
            )
        return todo

    def opened(self) -> None:
        if not self.chunk.lock_running():
            raise ChunkAlreadyDone()

    def earlier_counts(self) -> tuple[int, int]:
        """The run's counts so far: thresholds are judged over the whole run."""
        counts = type(self.run).objects.using(self.using).filter(pk=self.run.pk).values_list(
            "processed", "errored").first()
        return counts or (0, 0)

    def stopped(self, exc: ErrorThresholdExceeded) -> None:
        """The chunk's run stopped at its error threshold and was rolled back: the chunk
        ends failed with the message, counting the failures whose error rows were kept
        (the other items can be sent again with ``resend``)."""
        with transaction.atomic(using=self.using):
            if self.chunk.lock_running():
                counts = {"processed": exc.errored_here, "errored": exc.errored_here}
                self.chunk.finish(counts, None, str(exc))

    def committing(self, report, context, errors) -> None:
        errors.save(self.run)  # in the chunk's transaction: written once per chunk
        triggers = bool(registry.triggers_of(self.run.pipeline_name))
        keep = triggers or keeps_results(registry.get(self.run.pipeline_name))
        self.chunk.finish(report, _json_or_none(context), triggers=triggers,
                          results=_results_payload(report.results) if keep else None)

    def give_up(self, items: list, exc: BaseException) -> None:
        """Record what the chunk had left to do as errors of ``exc``: its items (under
        its pipeline) if its work did not commit, else its results (under each pipeline
        it triggers); the chunk ends failed, or done."""
        chunk, Status = self.chunk, self.chunk.Status
        with transaction.atomic(using=self.using):
            chunk.lock_running()
            status = type(chunk).objects.using(self.using).filter(pk=chunk.pk).values_list(
                "status", flat=True).first()
            if status in (Status.RUNNING, Status.DISPATCHED, Status.LOST):
                _record(self.run.pipeline_name, items, exc, self.using, self.run)
                counts = {"processed": len(items), "errored": len(items)}
                chunk.finish(counts, None, describe(exc))
            elif status == Status.COMMITTED:
                for target in registry.triggers_of(self.run.pipeline_name):
                    _record(target, items, exc, self.using, self.run)
                chunk.triggers_done()


def _record(pipeline_name: str, items: list, exc: BaseException, using: str, run) -> None:
    errors = ErrorCollector(pipeline_name, using, run=run)
    for item in items:
        errors.add(item, exc)
    errors.save(run)


def _json_or_none(value):
    try:
        return None if value is None else json_copy(value)
    except (TypeError, ValueError):
        return None


def _results_payload(results: list) -> dict | None:
    """The chunk's results as a payload to run its triggers on again, if they encode."""
    try:
        return next(encode_chunks(results, max(len(results), 1)), {"values": []})
    except ItemNotSerializable:
        logger.warning("The results of a chunk are not JSON nor saved model instances: its "
                       "triggers cannot run again if their worker dies")
        return None


def finish_if_complete(run, stale_after: float | None = None) -> bool:
    """Call ``finish_run`` if every chunk of ``run`` is done; True if this call did.

    The claim lets exactly one caller through, however many workers finish chunks at
    the same moment or a finished chunk is delivered again. ``stale_after``: claim
    again a run whose ``finish_run`` started that long ago and never ended (the sweep).
    """
    if not run.claim_finish(stale_after):
        return False
    run.refresh_from_db()
    # Every chunk is done, its triggers too: a run of theirs still running was left so by
    # a worker that died (and the chunk ran again).
    run.abandon_running_children()
    failed = run.chunks.filter(status=run.chunks.model.Status.FAILED)
    status, message, over_threshold = run.Status.DONE, "", False
    if count := failed.count():
        first = failed.order_by("index").values_list("message", flat=True).first()
        status, message = run.Status.FAILED, (
            f"{count} of {run.chunks_total} chunks failed (the first: {first})")
    try:
        cls = registry.get(run.pipeline_name)
        # Chunks that committed side by side could each stay under the threshold.
        thresholds = Thresholds.of(cls, run.dispatch.get("options"))
        if thresholds.exceeded(run.processed, run.errored, final=True):
            status, over_threshold = run.Status.FAILED, True
            message = str(ErrorThresholdExceeded(run.pipeline_name, run.errored, run.processed))
        # Prune and sinks: only for a run every chunk of which committed.
        if failure := finish_outputs(run, cls, complete=status == run.Status.DONE):
            status, message = run.Status.FAILED, failure
        cls(state=PipeState(run.dispatch.get("context") or {})).finish_run(run)
    except Exception as exc:
        logger.exception("finish_run of run %s of %r failed", run.pk, run.pipeline_name)
        status, message = run.Status.FAILED, f"finish_run: {describe(exc)}"
    run.set_outcome(status, message)
    if status == run.Status.FAILED:
        notify.run_failed(run, over_threshold)
    return True
