"""The Celery task ``datapipe.run``: one chunk of a distributed run.

Thin on purpose: the work is :func:`datapipe.ledger.run_chunk`. The options make
a killed worker lose nothing: the message is acknowledged only after the chunk
(``acks_late``) and put back when the worker process dies (``reject_on_worker_lost``);
the chunk ledger skips a chunk that an earlier delivery committed and gives up on one
that keeps killing its worker. Database connection errors are retried with backoff.
"""

from celery import shared_task

from .ledger import CONNECTION_ERRORS, run_chunk

__all__ = ["run"]


@shared_task(
    name="datapipe.run",
    bind=True,
    serializer="json",
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=CONNECTION_ERRORS,
    retry_backoff=1,
    retry_backoff_max=60,
    retry_jitter=True,
    max_retries=5,
    ignore_result=True,
)
def run(self, **chunk) -> str:
    """Run one chunk; see :func:`datapipe.ledger.run_chunk` for the arguments."""
    return run_chunk(self, **chunk)
