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
import time
import uuid
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.db.models import QuerySet
from django.db.models.query import ModelIterable
from django.utils import timezone

from ..identity import database_for
from ..tasks import run as run_task
from .chunks import encode_chunks, json_copy, payload_size
from .ledger import finish_if_complete

__all__ = ["RunHandle", "dispatch", "progress", "resend"]

#: Chunk rows written (and tasks sent) per batch, so memory stays flat.
_BATCH = 500


def _context_json(value: dict, what: str = "The session's context") -> dict:
    try:
        return json_copy(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{what} must be JSON-encodable to travel with Celery chunks: {exc}") \
            from None


def dispatch(session, items: Any, name: str, celery_chunksize: int = 10,
             queue: str | None = None, **task_options) -> RunHandle:
    """Write the run and its chunks, send them once committed, return a :class:`RunHandle`.

    Called by ``Session.run_in_celery``. Inside a transaction the tasks are sent when
    it commits (and never if it rolls back). ``task_options`` go to ``apply_async``.
    """
    from ..models import PipelineChunk, PipelineRun

    if not isinstance(celery_chunksize, int) or isinstance(celery_chunksize, bool) or (
        celery_chunksize < 1
    ):
        raise ValueError(f"celery_chunksize must be a positive integer, not {celery_chunksize!r}")
    if isinstance(items, QuerySet) and items._iterable_class is not ModelIterable:
        items = list(items)  # values()/values_list() rows are sent as JSON values
    options = session.options
    using = database_for(items, options.using)
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
        while batch := list(itertools.islice(payloads, _BATCH)):
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
    """Send a task per chunk (pages of rows by index); finish an empty run at once."""
    using = chunks.db
    sent_with = run.dispatch
    last = -1
    while page := list(chunks.filter(index__gt=last).order_by("index")[:_BATCH]):
        for chunk in page:
            run_task.apply_async(
                kwargs={"run_id": run.pk, "chunk_id": chunk.pk, "using": using},
                task_id=chunk.task_id,
                queue=sent_with.get("queue"),
                **sent_with.get("task_options", {}),
            )
        last = page[-1].index
    if run.chunks_total == 0:
        finish_if_complete(run)


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
        """Block until every chunk is done and ``finish_run`` ran; return the run record.

        Raises the builtin :class:`TimeoutError` after ``timeout`` seconds. Called inside
        the transaction that dispatched the run it would wait forever: the chunks are
        only sent when that transaction commits.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            run = self.run
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
           using: str = "default") -> int:
    """Send the lost and failed chunks of a run again; return how many were sent.

    ``stale_after`` (seconds): chunks still dispatched or running whose last start (or
    dispatch) is older than that are first marked lost, e.g. after the broker lost
    their messages. Failed chunks have their counts taken back out of the run. The run
    is open again until they are done, and ``finish_run`` runs again after them.
    ``queue`` overrides the queue the run was sent to.
    """
    from ..models import PipelineChunk, PipelineRun

    Status = PipelineChunk.Status
    with transaction.atomic(using=using):
        run = PipelineRun.objects.using(using).select_for_update().get(pk=run_id)
        chunks = run.chunks.select_for_update()
        if stale_after is not None:
            before = timezone.now() - timedelta(seconds=stale_after)
            chunks.filter(status=Status.DISPATCHED, dispatched_at__lte=before).update(
                status=Status.LOST)
            chunks.filter(status=Status.RUNNING, started_at__lte=before).update(
                status=Status.LOST)
        again = list(chunks.filter(status__in=[Status.FAILED, Status.LOST]))
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
