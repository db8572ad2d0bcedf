"""Distributed runs, the caller's side: dispatch, run handles, re-sending.

:func:`dispatch` (behind ``Session.run_in_celery``) writes a
:class:`~datapipe.models.PipelineRun` and one :class:`~datapipe.models.PipelineChunk`
row per chunk (:mod:`datapipe.distributed.chunks` encodes the items), and sends one
``datapipe.run`` task per chunk once that is committed. The message names the run and
the chunk, nothing else: workers read the rest from the rows
(:mod:`datapipe.distributed.worker`).

Context: every chunk gets a copy of the context as it was at dispatch. What a chunk's
pipes (and its depends and triggers, which run in the worker) put in it does not come
back to the caller nor reach other chunks; it is stored on the chunk row
(``PipelineChunk.context``) for ``finish_run`` to combine.
"""

from __future__ import annotations

import itertools
import logging
import time
import uuid
from typing import Any

from celery import current_app
from django.db import InterfaceError, OperationalError, connections, transaction
from django.db.models import QuerySet
from django.db.models.query import ModelIterable
from django.utils import timezone

from ..exceptions import DispatchFailed, NothingToResend
from ..identity import database_for
from ..lifecycle import describe
from ..options import refuse_unknown
from ..selection import select_items
from .chunks import encode_chunks, json_copy, json_problem, payload_size
from .ledger import finish_if_complete

__all__ = ["TASK_OPTIONS", "RunHandle", "dispatch", "progress", "resend"]

logger = logging.getLogger("datapipe")

#: Chunk rows read (to send their tasks) per batch, so memory stays flat.
_BATCH = 500
#: Items in the chunk rows written per batch: a batch of 500 chunks of 1,000 items held
#: half a million keys at once (+48 MiB at 1,000,000 items).
_ITEMS_PER_WRITE = 20_000


#: The options of Celery's ``apply_async`` that ``run_in_celery`` passes on. Others are
#: refused: datapipe sets the task id, arguments and serializer itself, and the options
#: are stored with the run (as JSON) so that ``resend`` sends the chunks alike.
TASK_OPTIONS = (
    "countdown", "expires", "priority", "headers", "routing_key", "exchange", "time_limit",
    "soft_time_limit", "retry", "retry_policy", "compression",
)


def _context_json(value: dict, what: str = "The session's context") -> dict:
    problem = json_problem(value)
    if problem is not None:
        raise TypeError(f"{what} must be JSON-encodable to travel with Celery chunks, and "
                        f"come back equal: it holds {problem}.")
    return json_copy(value)


def dispatch(session, items: Any, name: str, celery_chunksize: int = 10,
             queue: str | None = None, options=None, **task_options) -> RunHandle:
    """Write the run and its chunks, send them once committed, return a :class:`RunHandle`.

    Called by ``Session.run_in_celery``. Inside a transaction the tasks are sent when
    it commits (and never if it rolls back). ``task_options`` go to ``apply_async``
    (:data:`TASK_OPTIONS` only: anything else raises :class:`TypeError`).
    """
    from ..models import PipelineChunk, PipelineRun

    refuse_unknown("run_in_celery()", task_options, ("celery_chunksize", "queue", *TASK_OPTIONS))
    if queue is not None and not isinstance(queue, str):
        raise TypeError(f"queue must be a queue name, not {queue!r}")
    if not isinstance(celery_chunksize, int) or isinstance(celery_chunksize, bool) or (
        celery_chunksize < 1
    ):
        raise ValueError(f"celery_chunksize must be a positive integer, not {celery_chunksize!r}")
    if isinstance(items, QuerySet) and items._iterable_class is not ModelIterable:
        items = list(items)  # values()/values_list() rows are sent as JSON values
    options = options or session.options
    using = database_for(items, options.using)
    items = select_items(items, name, options.select, using)
    sent_with = {
        "context": _context_json(session.context),
        "options": options.for_chunks(),
        "queue": queue,
        "task_options": _context_json(task_options, "run_in_celery()'s task options"),
    }
    with transaction.atomic(using=using):
        run = PipelineRun.start(name, using, distributed=True, chunks_total=0, dispatch=sent_with)
        total = 0
        payloads = encode_chunks(items, celery_chunksize, options.chunksize)
        per_write = max(1, _ITEMS_PER_WRITE // max(celery_chunksize, 1))
        while batch := list(itertools.islice(payloads, per_write)):
            now = timezone.now()
            PipelineChunk.objects.using(using).bulk_create([
                PipelineChunk(run=run, index=total + offset, items=payload,
                              size=payload_size(payload), task_id=str(uuid.uuid4()),
                              dispatched_at=now)
                for offset, payload in enumerate(batch)
            ])
            total += len(batch)
        run.chunks_total = total
        run.save(update_fields=["chunks_total"])
        transaction.on_commit(lambda: _send(run, run.chunks.all()), using=using)
    return RunHandle(run.pk, using)


def _send(run, chunks: QuerySet) -> None:
    """Send a task per chunk (pages of rows by index); finish an empty run at once.

    When the broker cannot be reached, the chunks not sent are marked lost and the run
    failed, and :class:`DispatchFailed` names the run (``resend`` sends them later).
    """
    using = chunks.db
    sent_with = run.dispatch
    last = -1
    # Without their items (a page of them would hold 500 chunks' keys).
    chunks = chunks.only("pk", "index", "task_id")
    while page := list(chunks.filter(index__gt=last).order_by("index")[:_BATCH]):
        for chunk in page:
            try:
                # By name: the caller's side does not import the workers' code.
                current_app.send_task(
                    "datapipe.run",
                    kwargs={"run_id": run.pk, "chunk_id": chunk.pk, "using": using},
                    task_id=chunk.task_id,
                    queue=sent_with.get("queue"),
                    serializer="json",
                    **sent_with.get("task_options", {}),
                )
            except Exception as exc:  # kombu's and redis' errors have no common root
                _dispatch_failed(run, chunks.filter(index__gte=chunk.index), exc)
        last = page[-1].index
    if run.chunks_total == 0:
        finish_if_complete(run)


def _dispatch_failed(run, unsent: QuerySet, exc: Exception):
    Status = unsent.model.Status
    lost = unsent.mark_lost(Status.DISPATCHED)
    message = (f"Dispatch failed: the broker could not be reached ({describe(exc)}); "
               f"{lost} chunks not sent. Send them with `manage.py datapipe resend "
               f"{run.pk}` once it is back.")
    run.fail(message)
    logger.error("Run %s of %r: %s", run.pk, run.pipeline_name, message)
    raise DispatchFailed(run.pk, f"Run {run.pk} of {run.pipeline_name!r}: {message}") from exc


def progress(run_id: int, using: str = "default") -> dict:
    """See :meth:`datapipe.models.PipelineRun.progress`."""
    from ..models import PipelineRun

    return PipelineRun.objects.using(using).get(pk=run_id).progress()


class RunHandle:
    """A distributed run seen from the caller: ``id``, ``progress()``, ``wait()``."""

    def __init__(self, run_id: int, using: str = "default"):
        self.id = run_id
        self.using = using

    def __repr__(self):
        return f"<RunHandle run={self.id}>"

    @property
    def run(self):
        """The run record, read afresh."""
        from ..models import PipelineRun

        return PipelineRun.objects.using(self.using).get(pk=self.id)

    def progress(self) -> dict:
        """See :meth:`datapipe.models.PipelineRun.progress`."""
        return self.run.progress()

    def wait(self, timeout: float | None = None, interval: float = 0.25):
        """Block until every chunk is done (the runs it triggers included) and
        ``finish_run`` ran; return the run record.

        Raises the builtin :class:`TimeoutError` after ``timeout`` seconds. A lost
        database connection (a restart) is opened again and the wait goes on. Called
        inside the transaction that dispatched the run it would wait forever: the chunks
        are only sent when that transaction commits.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                run = self.run
            except (OperationalError, InterfaceError):
                if connections[self.using].in_atomic_block:
                    raise
                connections[self.using].close()
                run = None
            if run is None:
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError(f"Run {self.id}: the database did not answer for "
                                       f"{timeout}s.")
                time.sleep(interval)
                continue
            if run.status != run.Status.RUNNING:
                return run
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(
                    f"Run {self.id} of {run.pipeline_name!r} not finished after {timeout}s: "
                    f"{run.chunks_done}/{run.chunks_total} chunks done."
                )
            time.sleep(interval if deadline is None else
                       max(0.0, min(interval, deadline - time.monotonic())))


def resend(run_id: int, *, stale_after: float | None = None, queue: str | None = None,
           using: str = "default", failed: bool = True) -> int:
    """Send the lost (and, with ``failed``, the failed) chunks of a run again; return
    how many were sent.

    ``stale_after`` (seconds): first mark lost the chunks that the run has not started
    while it did not move for that long (the broker lost their messages), and those
    whose worker gave no sign of life for that long (it died). Failed chunks have their
    counts taken back out of the run. The run is open again until they are done, and
    ``finish_run`` runs again after them. ``queue`` overrides the queue the run was sent
    to. Raises :class:`NothingToResend` for an unknown or a local run.
    """
    from ..models import PipelineChunk, PipelineRun

    Status = PipelineChunk.Status
    with transaction.atomic(using=using):
        run = PipelineRun.objects.using(using).select_for_update().filter(pk=run_id).first()
        if run is None:
            raise NothingToResend(f"No run {run_id}.")
        if not run.distributed:
            raise NothingToResend(f"Run {run_id} of {run.pipeline_name!r} ran locally: it has "
                                  "no chunks to send (run the pipeline again instead).")
        chunks = run.chunks.select_for_update()
        if stale_after is not None:
            if PipelineRun.objects.using(using).stale(stale_after).filter(pk=run_id).exists():
                chunks.mark_lost(Status.DISPATCHED)
            lost_worker = chunks.worker_lost(stale_after)
            lost_worker.mark_lost(Status.RUNNING)
        statuses = [Status.LOST, Status.FAILED] if failed else [Status.LOST]
        again = list(chunks.filter(status__in=statuses))
        if stale_after is not None:
            again += list(chunks.worker_lost(stale_after).filter(status=Status.COMMITTED))
        if not again:
            return 0
        if queue is not None:
            run.dispatch = {**run.dispatch, "queue": queue}
        run.reopen([chunk for chunk in again if chunk.status == Status.FAILED])
        PipelineChunk.objects.using(using).reset_for_resend(again)
        ids = [chunk.pk for chunk in again]
        transaction.on_commit(
            lambda: _send(run, PipelineChunk.objects.using(using).filter(pk__in=ids)),
            using=using,
        )
    return len(again)
