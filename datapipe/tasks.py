"""The Celery tasks: ``datapipe.run`` (one chunk of a distributed run),
``datapipe.sweep`` (heals the runs that stopped moving) and ``datapipe.scheduled`` (a
pipeline's run on its schedule, sent by ``celery beat``).

Thin on purpose: the work is :func:`datapipe.distributed.worker.run_chunk`. The options
make a killed worker lose nothing: the message is acknowledged only after the chunk
(``acks_late``) and put back when the worker process dies (``reject_on_worker_lost``);
the chunk's record skips a chunk that an earlier delivery committed and gives up on one
that keeps killing its worker. Database connection errors are retried with backoff
(1, 2, 4, ... 32, then 60 seconds apart, no jitter: about five minutes of outage); a
chunk that still cannot reach the database is left to the sweep.

The message carries ids only (run, chunk, database alias); anything else is rejected
and logged, and touches no chunk.
"""

import logging

from celery import shared_task
from django.conf import settings

from .distributed.sweep import sweep as sweep_runs
from .distributed.worker import CONNECTION_ERRORS, MAX_RETRIES, run_chunk

__all__ = ["run", "scheduled", "sweep"]

logger = logging.getLogger("datapipe")


@shared_task(
    name="datapipe.run",
    bind=True,
    serializer="json",
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=CONNECTION_ERRORS,
    retry_backoff=1,
    retry_backoff_max=60,
    retry_jitter=False,
    max_retries=MAX_RETRIES,
    ignore_result=True,
)
def run(self, run_id=None, chunk_id=None, using="default", **unexpected) -> str:
    """Run the chunk ``chunk_id`` of the run ``run_id`` on the database ``using``."""
    valid_ids = all(isinstance(i, int) and not isinstance(i, bool) for i in (run_id, chunk_id))
    if unexpected or not valid_ids or not isinstance(using, str) or using not in settings.DATABASES:
        logger.error("Rejected a datapipe.run message: run_id=%r chunk_id=%r using=%r, "
                     "unexpected arguments %s", run_id, chunk_id, using, sorted(unexpected))
        return "rejected"
    return run_chunk(run_id, chunk_id, retries=self.request.retries,
                     max_retries=self.max_retries, using=using)


@shared_task(name="datapipe.sweep", serializer="json", ignore_result=True)
def sweep(stale_after=None) -> str:
    """Heal the distributed runs that stopped moving; see :mod:`datapipe.distributed.sweep`."""
    if stale_after is not None and not isinstance(stale_after, (int, float)):
        logger.error("Rejected a datapipe.sweep message: stale_after=%r", stale_after)
        return "rejected"
    return str(sweep_runs(stale_after))


@shared_task(name="datapipe.scheduled", serializer="json")
def scheduled(name=None) -> dict | str:
    """Run the pipeline ``name`` over its ``source()``, unless its previous scheduled run
    still runs; see :mod:`datapipe.schedules`."""
    from .registry import registry
    from .scheduled import run_scheduled

    if not isinstance(name, str) or name not in registry:
        logger.error("Rejected a datapipe.scheduled message: name=%r", name)
        return "rejected"
    return run_scheduled(name)
