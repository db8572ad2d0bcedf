"""The worker's side of a distributed run: one chunk, one transaction, counted once.

:func:`run_chunk` (the body of the task ``datapipe.run``) runs a chunk through the
engine with a :class:`ChunkLedger`: the chunk's work, its row turning ``done`` and its
counts added to the run commit together, so a chunk delivered again after it committed
finds itself done and is skipped. The worker whose chunk completes the run calls the
pipeline's ``finish_run`` (:func:`finish_if_complete`).
"""

from __future__ import annotations

import logging
import os
import socket

from django.db import DEFAULT_DB_ALIAS, InterfaceError, OperationalError, connections, transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from . import conf
from .chunks import decode_chunk, json_copy, payload_values
from .errors import ErrorCollector
from .exceptions import DatapipeError
from .pipe import PipeState
from .registry import registry
from .report import COUNTS

__all__ = [
    "CONNECTION_ERRORS", "COUNTS", "ChunkFailed", "ChunkGivenUp", "ChunkLedger",
    "close_connections", "finish_if_complete", "run_chunk",
]

logger = logging.getLogger("datapipe")

#: Database errors after which a chunk is retried on a fresh connection.
CONNECTION_ERRORS = (OperationalError, InterfaceError)

#: The item counts of runs and chunks.


class ChunkAlreadyDone(Exception):
    """Internal: this delivery of a chunk found it finished by an earlier one."""


class ChunkGivenUp(DatapipeError):
    """A chunk was delivered again and again without finishing: its items are errors."""


class ChunkFailed(DatapipeError):
    """A chunk failed as a whole (e.g. ``prepare`` raised): its items are errors."""


class ChunkLedger:
    """One delivery of one chunk, as the engine sees it (see ``Engine.run``).

    :meth:`begin` locks the chunk row inside the chunk's transaction, so a second
    delivery of the same chunk waits, then finds it done; :meth:`commit` marks it done
    and adds its counts to the run in that same transaction.
    """

    def __init__(self, run, chunk_id: int, using: str):
        self.run = run
        self.chunk_id = chunk_id
        self.using = using
        self.committed = False

    def _chunks(self):
        from .models import PipelineChunk

        return PipelineChunk.objects.using(self.using).filter(pk=self.chunk_id)

    def start(self, retries: int) -> bool:
        """Count this delivery; False when the chunk is finished already.

        Raises :class:`ChunkGivenUp` when the chunk was delivered more than
        ``CELERY_MAX_REDELIVERIES`` times beyond its retries without finishing.
        """
        from .models import PipelineChunk

        Status = PipelineChunk.Status
        started = self._chunks().exclude(status__in=[Status.DONE, Status.FAILED]).update(
            status=Status.RUNNING, deliveries=F("deliveries") + 1, started_at=timezone.now(),
            worker=f"{socket.gethostname()}:{os.getpid()}",
        )
        if not started:
            return False
        deliveries = self._chunks().values_list("deliveries", flat=True).get()
        # Each message (the first and each retry) is delivered once when all goes well;
        # deliveries beyond that are redeliveries after a worker died.
        redeliveries = deliveries - 1 - retries
        if redeliveries > conf.get("CELERY_MAX_REDELIVERIES"):
            raise ChunkGivenUp(
                f"The chunk was delivered {deliveries} times without finishing: it keeps "
                "killing its worker (or outlives the broker's visibility timeout)."
            )
        return True

    def begin(self) -> None:
        """Lock the chunk row; raise :class:`ChunkAlreadyDone` if another delivery did it."""
        from .models import PipelineChunk

        status = self._chunks().select_for_update().values_list("status", flat=True).first()
        if status != PipelineChunk.Status.RUNNING:
            raise ChunkAlreadyDone()

    def commit(self, report, context: dict) -> None:
        """Mark the chunk done with ``report``'s counts, add them to the run."""
        self._close(report, context, "")
        transaction.on_commit(lambda: setattr(self, "committed", True), using=self.using)

    def fail(self, items: list, exc: BaseException) -> None:
        """Record every item of the chunk as an error of ``exc``; mark the chunk failed."""
        from .models import PipelineChunk

        with transaction.atomic(using=self.using):
            status = self._chunks().select_for_update().values_list("status", flat=True).first()
            if status in (None, PipelineChunk.Status.DONE, PipelineChunk.Status.FAILED):
                return
            errors = ErrorCollector(self.run.pipeline_name, self.using)
            for item in items:
                errors.add(item, exc)
            errors.save(self.run)
            counts = {"processed": len(items), "errored": len(items)}
            self._close(counts, None, f"{type(exc).__name__}: {exc}"[:2000])

    def _close(self, report, context, message: str) -> None:
        from .models import PipelineChunk, PipelineRun

        counts = {name: _count(report, name) for name in COUNTS}
        broke = bool(_count(report, "broke"))
        status = PipelineChunk.Status.FAILED if message else PipelineChunk.Status.DONE
        self._chunks().update(
            status=status, **counts, broke=broke, context=_json_or_none(context),
            message=message, finished_at=timezone.now(),
        )
        added = {name: F(name) + value for name, value in counts.items()}
        if broke:
            added["broke"] = True
        PipelineRun.objects.using(self.using).filter(pk=self.run.pk).update(
            chunks_done=F("chunks_done") + 1, **added
        )


def _count(report, name: str) -> int:
    return report.get(name, 0) if isinstance(report, dict) else getattr(report, name)


def _json_or_none(value):
    try:
        return None if value is None else json_copy(value)
    except (TypeError, ValueError):
        return None


def finish_if_complete(run_id: int, using: str = DEFAULT_DB_ALIAS) -> bool:
    """Call ``finish_run`` if every chunk of the run is finished; True if this call did.

    The conditional UPDATE lets exactly one caller through, however many workers
    finish chunks at the same moment or a finished chunk is delivered again.
    """
    from .models import PipelineChunk, PipelineRun

    runs = PipelineRun.objects.using(using).filter(pk=run_id)
    claimed = runs.filter(finished_at__isnull=True, chunks_done__gte=F("chunks_total")).update(
        finished_at=timezone.now()
    )
    if not claimed:
        return False
    run = runs.get()
    failed = run.chunks.filter(status=PipelineChunk.Status.FAILED).count()
    status, message = run.Status.DONE, ""
    if failed:
        status, message = run.Status.FAILED, f"{failed} of {run.chunks_total} chunks failed"
    try:
        cls = registry.get(run.pipeline_name)
        cls(state=PipeState(run.dispatch.get("context") or {})).finish_run(run)
    except Exception as exc:
        logger.exception("finish_run of run %s of %r failed", run.pk, run.pipeline_name)
        status, message = run.Status.FAILED, f"finish_run: {type(exc).__name__}: {exc}"[:2000]
    runs.update(status=status, message=message)
    return True


def run_chunk(task, run_id: int, chunk_id: int, pipeline: str, items: dict, context: dict,
              options: dict, using: str = DEFAULT_DB_ALIAS) -> str:
    """Run one chunk of a distributed run (the body of the ``datapipe.run`` task).

    Returns what happened: ``"done"``, ``"skipped"`` (done by an earlier delivery),
    ``"failed"`` or ``"missing"`` (the run is gone). Database connection errors close
    the connections and propagate, for the task to retry, until its last retry, where
    the chunk's items are recorded as errors.
    """
    from .models import PipelineRun
    from .session import Session

    try:
        run = PipelineRun.objects.using(using).filter(pk=run_id).first()
    except CONNECTION_ERRORS:
        close_connections()
        raise
    if run is None:
        logger.warning("Chunk %s of run %s: the run no longer exists", chunk_id, run_id)
        return "missing"
    ledger = ChunkLedger(run, chunk_id, using)
    decoded: list | QuerySet = []
    try:
        if not ledger.start(task.request.retries if task else 0):
            finish_if_complete(run_id, using)
            return "skipped"
        decoded = decode_chunk(items, using)
        session = Session(context=context, progress=False, atomic=True, using=using, **options)
        session._run_chain(pipeline, decoded, triggered_by="", active=(), ledger=ledger)
        outcome = "done"
    except ChunkAlreadyDone:
        outcome = "skipped"
    except CONNECTION_ERRORS as exc:
        close_connections()
        if ledger.committed:
            logger.exception("Run %s chunk %s: a database error after commit", run_id, chunk_id)
            outcome = "done"
        elif task is not None and task.request.retries < task.max_retries:
            raise
        else:
            _record_failure(ledger, items, decoded, exc, using)
            outcome = "failed"
    except Exception as exc:
        if ledger.committed:  # a trigger failed: its errors are its own
            logger.exception("Run %s chunk %s: a trigger failed", run_id, chunk_id)
            outcome = "done"
        else:
            _record_failure(ledger, items, decoded, exc, using)
            outcome = "failed"
    finish_if_complete(run_id, using)
    return outcome


def _record_failure(ledger: ChunkLedger, payload: dict, decoded, exc, using: str) -> None:
    if not isinstance(exc, DatapipeError):
        wrapped = ChunkFailed(f"The chunk failed as a whole: {type(exc).__name__}: {exc}")
        wrapped.__cause__ = exc
        wrapped.__traceback__ = exc.__traceback__
        exc = wrapped
    if isinstance(decoded, QuerySet) or not decoded:
        try:
            decoded = list(decode_chunk(payload, using))
        except Exception:  # the items cannot even be read: record what the payload holds
            logger.exception("Could not read the items of chunk %s", ledger.chunk_id)
            decoded = payload_values(payload)
    ledger.fail(list(decoded), exc)


def close_connections() -> None:
    """Close every database connection (after a connection error: reconnect next time)."""
    for connection in connections.all(initialized_only=True):
        try:
            connection.close()
        except CONNECTION_ERRORS:
            pass
