"""The record of one chunk of a distributed run, and the end of the run after its last.

:class:`ChunkRecord` is the :class:`~datapipe.lifecycle.RunRecord` of a chunk: the
chunk's work, its row turning ``done`` and its counts added to the run commit in one
transaction, so a chunk delivered again after it committed finds itself done and is
skipped. :func:`finish_if_complete` lets exactly one worker call the pipeline's
``finish_run`` once every chunk is finished.
"""

from __future__ import annotations

import logging

from django.db import transaction

from .. import conf
from ..errors.store import ErrorCollector
from ..exceptions import DatapipeError
from ..lifecycle import RunRecord
from ..pipe import PipeState
from ..registry import registry
from .chunks import json_copy

__all__ = ["ChunkAlreadyDone", "ChunkFailed", "ChunkGivenUp", "ChunkRecord", "finish_if_complete"]

logger = logging.getLogger("datapipe")


class ChunkAlreadyDone(Exception):
    """Internal: this delivery of a chunk found it finished by an earlier one."""


class ChunkGivenUp(DatapipeError):
    """A chunk was delivered again and again without finishing: its items are errors."""


class ChunkFailed(DatapipeError):
    """A chunk failed as a whole (e.g. ``prepare`` raised): its items are errors."""


class ChunkRecord(RunRecord):
    """One delivery of one chunk, as the engine sees it.

    :meth:`opened` locks the chunk row inside the chunk's transaction, so a second
    delivery of the same chunk waits, then finds it done; :meth:`committing` writes the
    chunk's error rows, marks it done and adds its counts to the run in that same
    transaction. Chunks of a run hold their pipeline's lock side by side.
    """

    shared_lock = True

    def __init__(self, chunk, using: str):
        super().__init__(chunk.run, using)
        self.chunk = chunk
        self.committed_work = False

    def start(self, retries: int) -> bool:
        """Count this delivery; False when the chunk is finished already.

        Raises :class:`ChunkGivenUp` when the chunk was delivered more than
        ``CELERY_MAX_REDELIVERIES`` times beyond its retries without finishing.
        """
        deliveries = self.chunk.start_delivery()
        if deliveries is None:
            return False
        # Each message (the first and each retry) is delivered once when all goes well;
        # deliveries beyond that are redeliveries after a worker died.
        if deliveries - 1 - retries > conf.get("CELERY_MAX_REDELIVERIES"):
            raise ChunkGivenUp(
                f"The chunk was delivered {deliveries} times without finishing: it keeps "
                "killing its worker (or outlives the broker's visibility timeout)."
            )
        return True

    def opened(self) -> None:
        if not self.chunk.lock_running():
            raise ChunkAlreadyDone()

    def committing(self, report, context, errors) -> None:
        errors.save(self.run)  # in the chunk's transaction: written once per chunk
        self.chunk.finish(report, _json_or_none(context))
        transaction.on_commit(lambda: setattr(self, "committed_work", True), using=self.using)

    def fail(self, items: list, exc: BaseException) -> None:
        """Record every item of the chunk as an error of ``exc``; mark the chunk failed."""
        with transaction.atomic(using=self.using):
            if not self.chunk.lock_running():
                return
            errors = ErrorCollector(self.run.pipeline_name, self.using)
            for item in items:
                errors.add(item, exc)
            errors.save(self.run)
            counts = {"processed": len(items), "errored": len(items)}
            self.chunk.finish(counts, None, f"{type(exc).__name__}: {exc}" or "failed")


def _json_or_none(value):
    try:
        return None if value is None else json_copy(value)
    except (TypeError, ValueError):
        return None


def finish_if_complete(run) -> bool:
    """Call ``finish_run`` if every chunk of ``run`` is finished; True if this call did.

    The claim lets exactly one caller through, however many workers finish chunks at
    the same moment or a finished chunk is delivered again.
    """
    if not run.claim_finish():
        return False
    run.refresh_from_db()
    failed = run.chunks.filter(status=run.chunks.model.Status.FAILED).count()
    status, message = run.Status.DONE, ""
    if failed:
        status, message = run.Status.FAILED, f"{failed} of {run.chunks_total} chunks failed"
    try:
        cls = registry.get(run.pipeline_name)
        cls(state=PipeState(run.dispatch.get("context") or {})).finish_run(run)
    except Exception as exc:
        logger.exception("finish_run of run %s of %r failed", run.pk, run.pipeline_name)
        status, message = run.Status.FAILED, f"finish_run: {type(exc).__name__}: {exc}"
    run.set_outcome(status, message)
    return True
