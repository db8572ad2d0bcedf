"""The sweep: distributed runs that stopped moving are healed without a person.

:func:`sweep` runs periodically (the task ``datapipe.sweep``, which
``datapipe.celery.configure(app)`` puts in the beat schedule every
``DATAPIPE["SWEEP_EVERY"]`` seconds; ``manage.py datapipe sweep`` by hand). Past
``DATAPIPE["STALE_AFTER"]`` seconds without a sign of life it:

* sends again the chunks whose worker died (running, or committed with triggers to
  run) and, in runs that stopped moving, the chunks never started (their messages
  were lost: a broker restarted without persistence, a caller killed while sending);
  a chunk already sent ``CELERY_MAX_REDELIVERIES`` times more is given up instead, its
  items recorded as errors;
* ends runs whose chunks are all done but whose end did not happen, or whose
  ``finish_run`` was interrupted (``finish_run`` may then run twice: write it so).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from django.db.models import F

from .. import conf
from .chunks import decode_chunk, payload_values
from .dispatch import resend
from .ledger import ChunkGivenUp, ChunkRecord, finish_if_complete

__all__ = ["SweepReport", "sweep"]

logger = logging.getLogger("datapipe")


@dataclass
class SweepReport:
    """What a sweep did: chunks sent again per run, chunks given up, runs finished."""

    resent: dict[int, int] = field(default_factory=dict)
    given_up: int = 0
    finished: list[int] = field(default_factory=list)

    def __str__(self):
        sent = sum(self.resent.values())
        return (f"{sent} chunks of {len(self.resent)} runs sent again, {self.given_up} given "
                f"up, {len(self.finished)} runs finished")


def sweep(stale_after: float | None = None, using: str = "default") -> SweepReport:
    """Heal the distributed runs that stopped moving (see the module docstring)."""
    from ..models import PipelineChunk, PipelineRun

    stale_after = conf.get("STALE_AFTER") if stale_after is None else stale_after
    report = SweepReport()
    runs = PipelineRun.objects.using(using)
    chunks = PipelineChunk.objects.using(using).filter(run__status=PipelineRun.Status.RUNNING)
    stale_runs = set(runs.stale(stale_after).values_list("pk", flat=True))
    lost = set(chunks.worker_lost(stale_after).values_list("run_id", flat=True))
    for run_id in sorted(stale_runs | lost):
        report.given_up += _give_up_resent(chunks.filter(run_id=run_id), stale_after,
                                           run_id in stale_runs)
        sent = resend(run_id, stale_after=stale_after, using=using, failed=False)
        if sent:
            report.resent[run_id] = sent
            logger.warning("Sweep: %s chunks of run %s sent again", sent, run_id)
    complete = runs.filter(status=PipelineRun.Status.RUNNING, distributed=True,
                           chunks_done__gte=F("chunks_total"))
    for run in complete:
        if finish_if_complete(run) or finish_if_complete(run, stale_after):
            report.finished.append(run.pk)
    return report


def _give_up_resent(chunks, stale_after: float, run_stale: bool) -> int:
    """Give up the chunks that would be sent again once more than the cap allows."""
    Status = chunks.model.Status
    ids = set(chunks.worker_lost(stale_after).values_list("pk", flat=True))
    if run_stale:
        ids |= set(chunks.filter(status=Status.DISPATCHED).values_list("pk", flat=True))
    given_up = 0
    for chunk in chunks.filter(pk__in=ids, resends__gte=conf.get("CELERY_MAX_REDELIVERIES")):
        payload = chunk.results if chunk.status == Status.COMMITTED else chunk.items
        try:
            items = list(decode_chunk(payload or {"values": []}, chunks.db))
        except Exception:
            items = payload_values(payload or {"values": []})
        ChunkRecord(chunk, chunks.db).give_up(items, ChunkGivenUp(
            f"The chunk was sent {chunk.resends + 1} times and never finished: it keeps "
            "killing its worker, or its worker keeps losing the database."))
        given_up += 1
    return given_up
