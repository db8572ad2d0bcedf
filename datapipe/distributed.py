"""Distributed runs: items cut into chunks, sent to Celery, tracked in a ledger.

The caller's side (:func:`dispatch`) writes a :class:`~datapipe.models.PipelineRun`
and one :class:`~datapipe.models.PipelineChunk` row per chunk, and sends one
``datapipe.run`` task per chunk once that is committed. The worker's side
(:func:`run_chunk`) runs the chunk through the same engine as a local run, in one
transaction that also marks the chunk done and adds its counts to the run: a chunk
delivered again after it committed finds itself done and is skipped, so the counts are
exact and nothing is saved twice. The worker whose chunk completes the run calls the
pipeline's ``finish_run``.

Context: every chunk gets a copy of the context as it was at dispatch. What a chunk's
pipes (and its depends and triggers, which run in the worker) put in it does not come
back to the caller nor reach other chunks; it is stored on the chunk row
(``PipelineChunk.context``) for ``finish_run`` to combine.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from django.db import DEFAULT_DB_ALIAS, InterfaceError, OperationalError, connections, transaction
from django.db.models import F, Model, QuerySet
from django.db.models.query import ModelIterable
from django.utils import timezone

from . import conf
from .errors import ErrorCollector
from .exceptions import DatapipeError, ItemNotSerializable
from .pipe import PipeState
from .registry import registry

__all__ = ["RunHandle", "dispatch", "progress", "resend", "run_chunk", "ChunkLedger"]

logger = logging.getLogger("datapipe")

#: Database errors after which a chunk is retried on a fresh connection.
CONNECTION_ERRORS = (OperationalError, InterfaceError)

COUNTS = ("processed", "succeeded", "continued", "ignored", "errored")

#: Chunk rows written (and tasks sent) per batch, so memory stays flat.
_BATCH = 500


class ChunkAlreadyDone(Exception):
    """Internal: this delivery of a chunk found it finished by an earlier one."""


class ChunkGivenUp(DatapipeError):
    """A chunk was delivered again and again without finishing: its items are errors."""


class ChunkFailed(DatapipeError):
    """A chunk failed as a whole (e.g. ``prepare`` raised): its items are errors."""


# Encoding items ---------------------------------------------------------------------


def _pk_json(pk: Any) -> Any:
    return pk if isinstance(pk, (int, str)) else str(pk)


def _content_type_id(model: type[Model]) -> int:
    from django.contrib.contenttypes.models import ContentType

    return ContentType.objects.get_for_model(model, for_concrete_model=False).pk


def _encode_value(position: int, item: Any) -> Any:
    if isinstance(item, Model):
        raise ItemNotSerializable(
            f"Item {position} ({item!r:.80}) cannot be sent to Celery: it is an unsaved "
            f"{type(item).__name__} (save it first, or send a JSON value)."
        )
    try:
        json.dumps(item)
    except (TypeError, ValueError) as exc:
        raise ItemNotSerializable(
            f"Item {position} ({item!r:.80}) cannot be sent to Celery: it is neither a "
            f"saved model instance nor JSON-encodable ({exc})."
        ) from None
    return item


def _encode_list(items: list, first: int) -> dict:
    """The chunk payload of a list of items (position ``first`` is the first one's)."""
    refs = []
    for position, item in enumerate(items, first):
        if isinstance(item, Model) and item.pk is not None:
            refs.append(["model", _content_type_id(type(item)), _pk_json(item.pk)])
        else:
            refs.append(["value", _encode_value(position, item)])
    kinds = {ref[0] for ref in refs}
    if kinds == {"value"}:
        return {"values": [ref[1] for ref in refs]}
    if kinds == {"model"} and len({ref[1] for ref in refs}) == 1:
        return {"content_type": refs[0][1], "pks": [ref[2] for ref in refs], "queryset": False}
    return {"refs": refs}


def _queryset_pks(queryset: QuerySet, page: int) -> Iterator[Any]:
    """The primary keys of ``queryset`` in pk order, read by keyset pages of ``page``."""
    query = queryset.query
    if query.is_sliced or query.combinator:
        yield from queryset.values_list("pk", flat=True).iterator(chunk_size=page)
        return
    pks = queryset.order_by("pk").values_list("pk", flat=True)
    batch = list(pks[:page])
    while batch:
        yield from batch
        if len(batch) < page:
            return
        batch = list(pks.filter(pk__gt=batch[-1])[:page])


def encode_chunks(items: Any, size: int, page: int = 2000) -> Iterator[dict]:
    """The chunk payloads of ``items``, ``size`` items each, lazily.

    A QuerySet of model instances is read as primary keys by keyset pages, never all
    at once; other items are encoded one by one, and an item that is neither a saved
    model instance nor JSON-encodable raises :class:`ItemNotSerializable`.
    """
    if isinstance(items, QuerySet) and items._iterable_class is ModelIterable:
        content_type = _content_type_id(items.model)
        pks = _queryset_pks(items, max(page, size))
        while batch := list(itertools.islice(pks, size)):
            yield {"content_type": content_type, "pks": [_pk_json(pk) for pk in batch],
                   "queryset": True}
        return
    iterator = iter(items)
    position = 0
    while batch := list(itertools.islice(iterator, size)):
        yield _encode_list(batch, position)
        position += len(batch)


def decode_chunk(payload: dict, using: str) -> Any:
    """The items of a chunk payload: a QuerySet, or a list (missing rows left out)."""
    from django.contrib.contenttypes.models import ContentType

    def model(content_type_id):
        return ContentType.objects.db_manager(using).get_for_id(content_type_id).model_class()

    if "values" in payload:
        return list(payload["values"])
    if "pks" in payload:
        queryset = model(payload["content_type"])._default_manager.using(using)
        queryset = queryset.filter(pk__in=payload["pks"]).order_by("pk")
        if payload.get("queryset"):
            return queryset
        found = {_pk_json(obj.pk): obj for obj in queryset}
        return [found[pk] for pk in payload["pks"] if pk in found]
    wanted: dict[int, list] = {}
    for ref in payload["refs"]:
        if ref[0] == "model":
            wanted.setdefault(ref[1], []).append(ref[2])
    found = {
        (content_type_id, _pk_json(obj.pk)): obj
        for content_type_id, pks in wanted.items()
        for obj in model(content_type_id)._default_manager.using(using).filter(pk__in=pks)
    }
    items = []
    for ref in payload["refs"]:
        if ref[0] == "value":
            items.append(ref[1])
        elif (ref[1], ref[2]) in found:
            items.append(found[(ref[1], ref[2])])
    return items


def _json_context(context: dict) -> dict:
    try:
        return json.loads(json.dumps(context))
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"The session's context must be JSON-encodable to travel with Celery chunks: {exc}"
        ) from None


# The caller's side --------------------------------------------------------------------


def dispatch(session, items: Any, name: str, celery_chunksize: int = 10,
             queue: str | None = None, **task_options) -> RunHandle:
    """Write the run and its chunks, send them once committed, return a :class:`RunHandle`.

    Called by ``Session.run_in_celery``. Inside a transaction the tasks are sent when
    it commits (and never if it rolls back). ``task_options`` go to ``apply_async``.
    """
    from .models import PipelineChunk, PipelineRun

    if not isinstance(celery_chunksize, int) or isinstance(celery_chunksize, bool) or (
        celery_chunksize < 1
    ):
        raise ValueError(f"celery_chunksize must be a positive integer, not {celery_chunksize!r}")
    if isinstance(items, QuerySet) and items._iterable_class is not ModelIterable:
        items = list(items)  # values()/values_list() rows are sent as JSON values
    options = session.options
    using = options.using or (items.db if isinstance(items, QuerySet) else DEFAULT_DB_ALIAS)
    sent_with = {
        "context": _json_context(session.context),
        "options": {"debug": options.debug, "chunksize": options.chunksize,
                    "keep_results": options.keep_results},
        "queue": queue,
        "task_options": _json_context(task_options),
    }
    with transaction.atomic(using=using):
        run = PipelineRun.objects.using(using).create(
            pipeline_name=name, distributed=True, chunks_total=0, dispatch=sent_with
        )
        total = 0
        payloads = encode_chunks(items, celery_chunksize, options.chunksize)
        while batch := list(itertools.islice(payloads, _BATCH)):
            now = timezone.now()
            PipelineChunk.objects.using(using).bulk_create([
                PipelineChunk(run=run, index=total + offset, items=payload,
                              size=_size(payload), task_id=str(uuid.uuid4()), dispatched_at=now)
                for offset, payload in enumerate(batch)
            ])
            total += len(batch)
        run.chunks_total = total
        run.save(update_fields=["chunks_total"])
        transaction.on_commit(lambda: _send(run, run.chunks.all()), using=using)
    return RunHandle(run.pk, using)


def _size(payload: dict) -> int:
    return len(payload.get("pks") or payload.get("values") or payload.get("refs") or ())


def _send(run, chunks: QuerySet) -> None:
    """Send a task per chunk (pages of rows by index); finish an empty run at once."""
    from .tasks import run as task

    using = chunks.db
    sent_with = run.dispatch
    last = -1
    while page := list(chunks.filter(index__gt=last).order_by("index")[:_BATCH]):
        for chunk in page:
            task.apply_async(
                kwargs={
                    "run_id": run.pk, "chunk_id": chunk.pk, "pipeline": run.pipeline_name,
                    "items": chunk.items, "context": sent_with["context"],
                    "options": sent_with["options"], "using": using,
                },
                task_id=chunk.task_id,
                queue=sent_with.get("queue"),
                **sent_with.get("task_options", {}),
            )
        last = page[-1].index
    if run.chunks_total == 0:
        finish_if_complete(run.pk, using)


def progress(run_id: int, using: str = DEFAULT_DB_ALIAS) -> dict:
    """Where a run stands: status, chunk counts (``chunks`` by status) and item counts."""
    from django.db.models import Count

    from .models import PipelineRun

    run = PipelineRun.objects.using(using).get(pk=run_id)
    by_status = dict(run.chunks.values_list("status").annotate(n=Count("pk")).order_by())
    return {
        "run_id": run.pk,
        "pipeline": run.pipeline_name,
        "status": run.status,
        "chunks_total": run.chunks_total,
        "chunks_done": run.chunks_done,
        "chunks": by_status,
        **{name: getattr(run, name) for name in COUNTS},
        "broke": run.broke,
        "finished": run.status != run.Status.RUNNING,
        "message": run.message,
        "elapsed": ((run.finished_at or timezone.now()) - run.started_at).total_seconds(),
    }


class RunHandle:
    """A distributed run seen from the caller: ``id``, ``progress()``, ``wait()``."""

    def __init__(self, run_id: int, using: str = DEFAULT_DB_ALIAS):
        self.id = run_id
        self.using = using

    def __repr__(self):
        return f"<RunHandle run={self.id}>"

    @property
    def run(self):
        """The run record, read afresh."""
        from .models import PipelineRun

        return PipelineRun.objects.using(self.using).get(pk=self.id)

    def progress(self) -> dict:
        """See :func:`progress`."""
        return progress(self.id, self.using)

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
           using: str = DEFAULT_DB_ALIAS) -> int:
    """Send the lost and failed chunks of a run again; return how many were sent.

    ``stale_after`` (seconds): chunks still dispatched or running whose last start (or
    dispatch) is older than that are first marked lost, e.g. after the broker lost
    their messages. Failed chunks have their counts taken back out of the run. The run
    is open again until they are done, and ``finish_run`` runs again after them.
    ``queue`` overrides the queue the run was sent to.
    """
    from .models import PipelineChunk, PipelineRun

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
        failed = [chunk for chunk in again if chunk.status == Status.FAILED]
        for name in COUNTS:
            setattr(run, name, getattr(run, name) - sum(getattr(c, name) for c in failed))
        run.chunks_done -= len(failed)
        run.status, run.finished_at, run.message = run.Status.RUNNING, None, ""
        if queue is not None:
            run.dispatch = {**run.dispatch, "queue": queue}
        run.save()
        now = timezone.now()
        for chunk in again:
            chunk.status, chunk.deliveries, chunk.broke = Status.DISPATCHED, 0, False
            for name in COUNTS:
                setattr(chunk, name, 0)
            chunk.task_id, chunk.dispatched_at, chunk.message = str(uuid.uuid4()), now, ""
            chunk.started_at = chunk.finished_at = chunk.context = None
        PipelineChunk.objects.using(using).bulk_update(again, [
            "status", "deliveries", "broke", *COUNTS, "task_id", "dispatched_at", "message",
            "started_at", "finished_at", "context",
        ])
        ids = [chunk.pk for chunk in again]
        transaction.on_commit(
            lambda: _send(run, PipelineChunk.objects.using(using).filter(pk__in=ids)),
            using=using,
        )
    return len(again)


# The worker's side --------------------------------------------------------------------


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
    if value is None:
        return None
    try:
        return json.loads(json.dumps(value))
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
            decoded = _payload_values(payload)
    ledger.fail(list(decoded), exc)


def _payload_values(payload: dict) -> list:
    if "values" in payload:
        return payload["values"]
    if "pks" in payload:
        return [{"content_type": payload["content_type"], "pk": pk} for pk in payload["pks"]]
    return [ref[1:] for ref in payload["refs"]]


def close_connections() -> None:
    """Close every database connection (after a connection error: reconnect next time)."""
    for connection in connections.all(initialized_only=True):
        try:
            connection.close()
        except CONNECTION_ERRORS:
            pass

