"""Error rows: written after the run's transaction, updated while open, resolved on success.

A run's failures are written after its transaction ends (at each commit of
``atomic=False``), so that rows survive the rollback of the run that produced them;
a Celery chunk writes them in its own transaction, with the chunk. The same item
failing again updates its open row (attempts + 1) instead of adding one, also when a
concurrent run holds or has just written that row.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from .. import conf
from ..identity import identity
from .capture import CapturedError, capture, code_revision
from .page import render_page

__all__ = ["ErrorCollector", "ErrorResolver", "save_errors"]

logger = logging.getLogger("datapipe")

#: Tries of an upsert that meets a row inserted by a concurrent run meanwhile.
CONFLICT_TRIES = 5


class ErrorResolver:
    """Resolves the open error rows of items that now succeed, one UPDATE per batch.

    Local runs, Celery chunks and reprocessing all resolve rows this way. It checks once
    per run whether the pipeline has open rows at all, and otherwise issues no query.
    The UPDATE runs in the run's transaction, so a run rolled back resolves nothing.
    """

    batch = 500

    def __init__(self, pipeline_name: str, using: str):
        from ..models import PipelineError

        self.pipeline_name = pipeline_name
        self.using = using
        self.open_rows = PipelineError.objects.using(using).filter(
            pipeline_name=pipeline_name, resolved=False
        )
        self.active = self.open_rows.exists()

    def resolve(self, items) -> int:
        """Resolve the open rows of ``items`` (which succeeded or continued); return how many."""
        if not self.active:
            return 0
        keys = [identity(item, self.using).key for item in items if item is not None]
        resolved = 0
        now = timezone.now()
        for start in range(0, len(keys), self.batch):
            resolved += self.open_rows.filter(item_key__in=keys[start:start + self.batch]).update(
                resolved=True, resolved_at=now
            )
        return resolved


class ErrorCollector:
    """Captures a run's failures and writes them as rows once the transaction is over.

    At most ``TRACEBACK_PAGES_PER_SIGNATURE`` rendered pages are stored per failure and
    run: with ``run`` (a distributed run, whose chunks each collect their own), the pages
    its other chunks stored count too (one query per failure met in the chunk).
    """

    def __init__(self, pipeline_name: str, using: str, run=None):
        self.pipeline_name = pipeline_name
        self.using = using
        self.run = run
        self.captured: list[CapturedError] = []
        self._pages = Counter()
        self._pending: list[CapturedError] = []

    def _pages_stored(self, signature: str) -> int:
        from ..models import PipelineError

        if self.run is None:
            return 0
        return PipelineError.objects.using(self.using).filter(
            run=self.run, pipeline_name=self.pipeline_name, signature=signature,
        ).exclude(traceback_html="").count()

    def add(self, item: Any, exc: BaseException, attempts: int = 1) -> CapturedError:
        """Capture a failure of ``item`` after ``attempts`` tries (see ``Pipe.retry``)."""
        limit = conf.get("TRACEBACK_PAGES_PER_SIGNATURE")
        error = capture(self.pipeline_name, item, exc, self.using)
        error.attempts = attempts
        if error.signature not in self._pages:
            self._pages[error.signature] = self._pages_stored(error.signature)
        if self._pages[error.signature] < limit:
            self._pages[error.signature] += 1
            error.traceback_html = render_page(exc, error.error_message)
        self.captured.append(error)
        self._pending.append(error)
        return error

    def save(self, run=None) -> None:
        """Write the pending failures: update open rows of the same items, create others."""
        pending, self._pending = self._pending, []
        if pending:
            save_errors(pending, self.using, run)


def save_errors(errors: list[CapturedError], using: str, run=None) -> None:
    """Upsert rows for ``errors`` in bulk (one open row per pipeline and item).

    A row that a concurrent run inserted meanwhile makes the insert fail on the
    one-open-row constraint: the upsert is tried again, and now updates that row.
    """
    latest: dict[tuple, CapturedError] = {}
    repeats = Counter()
    for error in errors:
        key = (error.pipeline_name, error.item_key)
        repeats[key] += error.attempts
        latest[key] = error
    for attempt in range(1, CONFLICT_TRIES + 1):
        try:
            with transaction.atomic(using=using):
                _upsert(latest, repeats, using, run)
            return
        except IntegrityError:
            if attempt == CONFLICT_TRIES:
                raise
            logger.info("Error rows met rows of a concurrent run; writing them again")


def _upsert(latest: dict, repeats: Counter, using: str, run) -> None:
    from ..models import PipelineError

    rows = PipelineError.objects.using(using).select_for_update()
    open_rows = {
        (row.pipeline_name, row.item_key): row
        for row in rows.filter(
            resolved=False,
            pipeline_name__in={k[0] for k in latest},
            item_key__in=[k[1] for k in latest],
        )
    }
    updated, created = [], []
    revision = code_revision()
    for key, error in latest.items():
        row = open_rows.get(key)
        if row is None:
            row = PipelineError(first_seen=error.seen_at, attempts=0)
            created.append(row)
        else:
            updated.append(row)
        _fill(row, error, run, revision)
        row.attempts += repeats[key]
    if updated:
        PipelineError.objects.using(using).bulk_update(updated, UPDATED_FIELDS)
    if created:
        opened = _new_groups(created, using)
        PipelineError.objects.using(using).bulk_create(created)
        if opened:
            transaction.on_commit(lambda: _announce(opened), using=using)
    if run is not None:  # the run keeps its rows after a later run takes them over
        _occurred(updated + created, run, using)


def _new_groups(created: list, using: str) -> list:
    """The first of ``created`` (rows about to be inserted) of each failure that has no
    open row under its pipeline yet: the error groups these rows open."""
    from ..models import PipelineError

    known = set(PipelineError.objects.using(using).filter(
        resolved=False, pipeline_name__in={row.pipeline_name for row in created},
        signature__in={row.signature for row in created},
    ).values_list("pipeline_name", "signature"))
    opened = {}
    for row in created:
        group = (row.pipeline_name, row.signature)
        if group not in known:
            opened.setdefault(group, row)
    return list(opened.values())


def _announce(opened: list) -> None:
    """``error_group_opened`` (signal, and mail when chosen) for each new group."""
    from .. import notify, signals

    for row in opened:
        signals.error_group_opened.send(type(row), pipeline=row.pipeline_name,
                                        signature=row.signature, error=row)
        notify.error_group_opened(row)


def _occurred(rows: list, run, using: str) -> None:
    from ..models import PipelineErrorOccurrence

    PipelineErrorOccurrence.objects.using(using).bulk_create(
        [PipelineErrorOccurrence(error=row, run=run, seen_at=row.last_seen) for row in rows],
        update_conflicts=True, unique_fields=["error", "run"], update_fields=["seen_at"],
    )


UPDATED_FIELDS = [
    "item_repr", "error_type", "error_message", "error_args", "frames", "signature",
    "traceback_html", "revision", "run", "attempts", "last_seen",
]


def _fill(row, error: CapturedError, run, revision: str) -> None:
    row.pipeline_name = error.pipeline_name
    row.item_content_type_id = error.content_type_id
    row.item_id = error.item_id
    row.item_value = error.item_value
    row.item_key = error.item_key
    row.item_repr = error.item_repr
    row.error_type = error.error_type
    row.error_message = error.error_message
    row.error_args = error.error_args
    row.frames = error.frames
    row.signature = error.signature
    if error.traceback_html or not row.traceback_html:
        row.traceback_html = error.traceback_html
    row.revision = revision
    row.run = run
    row.last_seen = error.seen_at
