"""The worker's side of a distributed run: one chunk through the chain, counted once.

:func:`run_chunk` (the body of the task ``datapipe.run``) trusts the database, not the
message: the message names a run and one of its chunks; the pipeline, the items, the
context and the options are read from their rows. The chunk runs through
:func:`datapipe.chain.run_chain` with a :class:`~datapipe.distributed.ledger.ChunkRecord`,
then its triggers run (:func:`datapipe.chain.run_triggers`) as a step of its ledger.
While it runs, a thread writes the chunk's heartbeat, so that the sweep can tell a
chunk whose worker died from a long one.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import DEFAULT_DB_ALIAS, InterfaceError, OperationalError, connections
from django.db.models import QuerySet

from .. import conf
from ..chain import run_chain, run_triggers
from ..exceptions import DatapipeError, ErrorThresholdExceeded
from ..lifecycle import describe
from ..options import RunOptions
from ..periodic import Periodic
from ..pipe import AttrDict
from ..registry import registry
from .chunks import decode_chunk, payload_values
from .ledger import ChunkAlreadyDone, ChunkFailed, ChunkRecord, finish_if_complete
from .outputs import keeps_results

__all__ = ["CONNECTION_ERRORS", "MAX_RETRIES", "heartbeat", "close_connections", "run_chunk"]

logger = logging.getLogger("datapipe")

#: Database errors after which a chunk is retried on a fresh connection.
CONNECTION_ERRORS = (OperationalError, InterfaceError)

#: Retries of a chunk after database connection errors (the task's ``max_retries``),
#: 1, 2, 4, ... 32, then 60 seconds apart: about five minutes of outage in all.
MAX_RETRIES = 10


def heartbeat(chunk) -> Periodic:
    """While the block runs, a thread writes ``chunk.heartbeat_at`` every fifth of
    ``DATAPIPE["STALE_AFTER"]``, on a database connection of its own."""
    return Periodic(chunk.beat, max(conf.get("STALE_AFTER") / 5, 0.2), "datapipe-heartbeat")


def run_chunk(run_id: int, chunk_id: int, *, retries: int = 0, max_retries: int = MAX_RETRIES,
              using: str = DEFAULT_DB_ALIAS) -> str:
    """Run the chunk ``chunk_id`` of the run ``run_id``, delivered for the ``retries``-th
    retry. Returns what happened: ``"done"``, ``"skipped"`` (done by an earlier
    delivery), ``"failed"``, ``"rejected"`` (no such chunk of that run) or ``"left"``
    (the database stayed away past the last retry: the sweep sends it again).

    Database connection errors close the connections and propagate, for the task to
    retry, until the last retry (``max_retries``).
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
    items: Any = []
    payload = chunk.items  # what is left to do: the items, then the results
    try:
        todo = record.start(retries)
        if todo is None:
            finish_if_complete(run)
            return "skipped"
        sent_with = run.dispatch
        options = RunOptions.from_chunk(sent_with.get("options", {}), progress=False,
                                        atomic=True, using=using)
        context = AttrDict(sent_with.get("context") or {})
        with heartbeat(chunk):
            if todo == "run":
                items = decode_chunk(chunk.items, using)
                report = run_chain(run.pipeline_name, items, options, context, record=record)
                results = report.results
            else:
                payload = chunk.results or {"values": []}
                results = items = decode_chunk(payload, using)
            _triggers(run, results, options, context)
        # A chunk with nothing triggered turned done with its commit.
        if todo == "triggers" or registry.triggers_of(run.pipeline_name):
            chunk.triggers_done(keep_results=keeps_results(registry.get(run.pipeline_name)))
        outcome = "done"
    except ChunkAlreadyDone:
        outcome = "skipped"
    except CONNECTION_ERRORS as exc:
        close_connections()
        if retries < max_retries:
            raise
        outcome = _give_up(record, payload, items, exc, using)
    except ErrorThresholdExceeded as exc:
        record.stopped(exc)
        outcome = "failed"
    except Exception as exc:
        outcome = _give_up(record, payload, items, exc, using)
    finish_if_complete(run)
    return outcome


def _triggers(run, results, options, context) -> None:
    """Run the chunk's triggers; their failures are their own (their records say so),
    except connection errors, which the chunk is retried for."""
    try:
        run_triggers(run.pipeline_name, results, options, context, run)
    except CONNECTION_ERRORS:
        raise
    except Exception:
        logger.exception("Run %s chunk: a triggered run failed", run.pk)


def _give_up(record: ChunkRecord, payload: dict, items, exc, using: str) -> str:
    """Record what the chunk had left (``payload``, decoded as ``items``) as errors;
    ``"left"`` if the database is still away, for the sweep to send the chunk again."""
    try:
        _record_failure(record, payload, items, exc, using)
    except CONNECTION_ERRORS:
        close_connections()
        logger.error("Chunk %s of run %s: the database is still away; the sweep sends it "
                     "again", record.chunk.pk, record.run.pk)
        return "left"
    return "failed"


def _record_failure(record: ChunkRecord, payload: dict, decoded, exc, using: str) -> None:
    if not isinstance(exc, DatapipeError):
        wrapped = ChunkFailed(f"The chunk failed as a whole: {describe(exc)}")
        wrapped.__cause__ = exc
        wrapped.__traceback__ = exc.__traceback__
        exc = wrapped
    if isinstance(decoded, QuerySet) or not decoded:
        try:
            decoded = list(decode_chunk(payload, using))
        except CONNECTION_ERRORS:
            raise
        except Exception:  # the items cannot even be read: record what the payload holds
            logger.exception("Could not read the items of chunk %s", record.chunk.pk)
            decoded = payload_values(payload)
    record.give_up(list(decoded), exc)


def close_connections() -> None:
    """Close every database connection (after a connection error: reconnect next time)."""
    for connection in connections.all(initialized_only=True):
        try:
            connection.close()
        except CONNECTION_ERRORS:
            pass
