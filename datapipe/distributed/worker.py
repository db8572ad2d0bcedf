"""The worker's side of a distributed run: one chunk through the chain, counted once.

:func:`run_chunk` (the body of the task ``datapipe.run``) trusts the database, not the
message: the message names a run and one of its chunks; the pipeline, the items, the
context and the options are read from their rows. The chunk runs through
:func:`datapipe.chain.run_chain` with a :class:`~datapipe.distributed.ledger.ChunkRecord`.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import DEFAULT_DB_ALIAS, InterfaceError, OperationalError, connections
from django.db.models import QuerySet

from ..chain import run_chain
from ..exceptions import DatapipeError
from ..options import RunOptions
from ..pipe import AttrDict
from .chunks import decode_chunk, payload_values
from .ledger import ChunkAlreadyDone, ChunkFailed, ChunkRecord, finish_if_complete

__all__ = ["CONNECTION_ERRORS", "MAX_RETRIES", "close_connections", "run_chunk"]

logger = logging.getLogger("datapipe")

#: Database errors after which a chunk is retried on a fresh connection.
CONNECTION_ERRORS = (OperationalError, InterfaceError)

#: Retries of a chunk after database connection errors (the task's ``max_retries``).
MAX_RETRIES = 5


def run_chunk(run_id: int, chunk_id: int, *, retries: int = 0, max_retries: int = MAX_RETRIES,
              using: str = DEFAULT_DB_ALIAS) -> str:
    """Run the chunk ``chunk_id`` of the run ``run_id``, delivered for the ``retries``-th
    retry. Returns what happened: ``"done"``, ``"skipped"`` (done by an earlier
    delivery), ``"failed"`` or ``"rejected"`` (no such chunk of that run).

    Database connection errors close the connections and propagate, for the task to
    retry, until the last retry (``max_retries``), where the chunk's items are recorded
    as errors.
    """
    from ..models import PipelineChunk

    try:
        chunk = (PipelineChunk.objects.using(using).select_related("run")
                 .filter(pk=chunk_id, run_id=run_id).first())
    except CONNECTION_ERRORS:
        close_connections()
        raise
    if chunk is None:
        logger.error("Rejected a message for chunk %s of run %s: no such chunk", chunk_id, run_id)
        return "rejected"
    record = ChunkRecord(chunk, using)
    run = chunk.run
    decoded: Any = []
    try:
        if not record.start(retries):
            finish_if_complete(run)
            return "skipped"
        decoded = decode_chunk(chunk.items, using)
        sent_with = run.dispatch
        options = RunOptions.resolve(progress=False, atomic=True, using=using,
                                     **sent_with.get("options", {}))
        run_chain(run.pipeline_name, decoded, options, AttrDict(sent_with.get("context") or {}),
                  record=record)
        outcome = "done"
    except ChunkAlreadyDone:
        outcome = "skipped"
    except CONNECTION_ERRORS as exc:
        close_connections()
        if record.committed_work:
            logger.exception("Run %s chunk %s: a database error after commit", run_id, chunk_id)
            outcome = "done"
        elif retries < max_retries:
            raise
        else:
            _record_failure(record, decoded, exc, using)
            outcome = "failed"
    except Exception as exc:
        if record.committed_work:  # a trigger failed: its errors are its own
            logger.exception("Run %s chunk %s: a trigger failed", run_id, chunk_id)
            outcome = "done"
        else:
            _record_failure(record, decoded, exc, using)
            outcome = "failed"
    finish_if_complete(run)
    return outcome


def _record_failure(record: ChunkRecord, decoded, exc, using: str) -> None:
    if not isinstance(exc, DatapipeError):
        wrapped = ChunkFailed(f"The chunk failed as a whole: {type(exc).__name__}: {exc}")
        wrapped.__cause__ = exc
        wrapped.__traceback__ = exc.__traceback__
        exc = wrapped
    payload = record.chunk.items
    if isinstance(decoded, QuerySet) or not decoded:
        try:
            decoded = list(decode_chunk(payload, using))
        except Exception:  # the items cannot even be read: record what the payload holds
            logger.exception("Could not read the items of chunk %s", record.chunk.pk)
            decoded = payload_values(payload)
    record.fail(list(decoded), exc)


def close_connections() -> None:
    """Close every database connection (after a connection error: reconnect next time)."""
    for connection in connections.all(initialized_only=True):
        try:
            connection.close()
        except CONNECTION_ERRORS:
            pass
