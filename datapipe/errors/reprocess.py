"""Reprocess the items behind collected errors, locally or on Celery workers.

The open rows handed in are grouped by pipeline, their items loaded back (model items
by content type and primary key, other items from their stored JSON value) and run
again with :meth:`Session.run <datapipe.Session.run>` or
:meth:`Session.run_in_celery <datapipe.Session.run_in_celery>`.

Rows are resolved by the engine itself (:class:`datapipe.errors.store.ErrorResolver`): an item
that succeeds (or ends with ``PipeContinue``) in any run of the pipeline, a reprocess, a
Celery chunk or a plain re-run, has its open row resolved in that run's transaction. An
item that fails again updates its row (``attempts`` + 1). An item that is ignored
(``PipeIgnore``), broken off or filtered out by ``prepare`` keeps its row open: it was
not processed with success, and ``mark resolved`` in the admin closes such rows.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import QuerySet

from ..exceptions import DatapipeError
from ..options import flag
from ..registry import registry
from ..report import RunReport
from ..sources.records import Record

__all__ = ["reprocess", "ReprocessResult", "PipelineReprocess"]

#: Primary keys per ``pk__in`` query (and per run) when loading model items back.
BATCH = 1000


@dataclass
class PipelineReprocess:
    """What reprocessing did for one pipeline.

    ``rows``: open rows whose items were run again; ``missing``: rows whose item no
    longer exists (now flagged ``item_missing``); ``resolved``: rows resolved by the
    local runs; ``reports`` (local) or ``handles`` (Celery): one per run started.
    """

    pipeline: str
    rows: int = 0
    missing: int = 0
    resolved: int = 0
    reports: list[RunReport] = field(default_factory=list)
    handles: list[Any] = field(default_factory=list)

    @property
    def still_open(self) -> int:
        """Rows run again locally that are still open (failed again, ignored, ...)."""
        return 0 if self.handles else self.rows - self.resolved

    def __str__(self):
        if self.handles:
            runs = ", ".join(f"#{handle.id}" for handle in self.handles)
            done = f"sent to Celery (run {runs})" if runs else "nothing to send"
            return f"{self.pipeline}: {self.rows} rows {done}, {self.missing} missing"
        return (
            f"{self.pipeline}: {self.rows} rows reprocessed, {self.resolved} resolved, "
            f"{self.still_open} still open, {self.missing} missing"
        )


@dataclass
class ReprocessResult:
    """What :func:`reprocess` did, per pipeline, with totals."""

    pipelines: dict[str, PipelineReprocess] = field(default_factory=dict)
    #: Rows handed in that were already resolved (their items are not run again).
    already_resolved: int = 0
    in_celery: bool = False

    @property
    def rows(self) -> int:
        """Open rows whose items were run again."""
        return sum(p.rows for p in self.pipelines.values())

    @property
    def resolved(self) -> int:
        """Rows resolved by the local runs (0 in Celery: workers resolve them later)."""
        return sum(p.resolved for p in self.pipelines.values())

    @property
    def missing(self) -> int:
        """Rows whose item no longer exists."""
        return sum(p.missing for p in self.pipelines.values())

    @property
    def still_open(self) -> int:
        """Rows run again locally and still open."""
        return sum(p.still_open for p in self.pipelines.values())

    @property
    def handles(self) -> list:
        """The Celery run handles, every pipeline's."""
        return [handle for p in self.pipelines.values() for handle in p.handles]

    def __str__(self):
        lines = [str(p) for p in self.pipelines.values()] or ["no open error rows"]
        if self.already_resolved:
            lines.append(f"{self.already_resolved} rows were already resolved")
        return "\n".join(lines)


def reprocess(
    errors: QuerySet | Iterable, in_celery: bool = False, queue: str | None = None, *,
    session=None,
) -> ReprocessResult:
    """Run the items behind the error rows ``errors`` again, each under its own pipeline.

    ``errors`` is a QuerySet or an iterable of :class:`~datapipe.models.PipelineError`;
    resolved rows among them are skipped. Locally (the default) the runs finish before
    this returns and the result counts the rows resolved; with ``in_celery=True`` the
    items are sent to Celery workers (on ``queue``) and the result holds the run
    handles. ``session`` (default: ``get_session()``) gives the runs' options.

    Raises :class:`~datapipe.PipelineNotFound` before running anything when a row names
    a pipeline that is no longer registered. ``PipeError`` propagates as in ``run()``.
    """
    from ..session import get_session

    in_celery = flag("in_celery", in_celery)
    if in_celery and importlib.util.find_spec("datapipe.distributed") is None:
        raise DatapipeError("Reprocessing in Celery needs datapipe.distributed, not installed.")
    result = ReprocessResult(in_celery=in_celery)
    by_pipeline: dict[str, list] = {}
    for row in errors:
        if row.resolved:
            result.already_resolved += 1
        else:
            by_pipeline.setdefault(row.pipeline_name, []).append(row)
    for name in by_pipeline:
        registry.get(name)  # PipelineNotFound before anything runs
    session = session if session is not None else get_session()
    for name, rows in by_pipeline.items():
        result.pipelines[name] = _reprocess_pipeline(session, name, rows, in_celery, queue)
    return result


def _reprocess_pipeline(session, name: str, rows: list, in_celery, queue) -> PipelineReprocess:
    from ..models import PipelineError

    outcome = PipelineReprocess(name)
    using = rows[0]._state.db or "default"

    def dispatch(items, item_rows):
        outcome.rows += len(item_rows)
        if in_celery:
            outcome.handles.append(session.run_in_celery(items, name, queue=queue))
        else:
            outcome.reports.append(session.run(items, name))

    missing: list = []
    for items, item_rows, absent in _batches(rows, using):
        missing.extend(absent)
        if item_rows:
            dispatch(items, item_rows)
    if missing:
        outcome.missing = PipelineError.objects.using(using).filter(
            pk__in=[row.pk for row in missing]
        ).update(item_missing=True)
    if not in_celery and outcome.rows:
        missing_ids = {row.pk for row in missing}
        run_ids = [row.pk for row in rows if row.pk not in missing_ids]
        outcome.resolved = PipelineError.objects.using(using).filter(
            pk__in=run_ids, resolved=True
        ).count()
    return outcome


def _batches(rows: list, using: str):
    """Yield ``(items, their rows, rows whose item is missing)`` to run, batch by batch.

    Model items are read back on the rows' database by content type and primary key
    (:mod:`datapipe.identity`); keyed records are their stored fields with their key;
    other items are their stored JSON values.
    """
    from django.contrib.contenttypes.models import ContentType

    by_type: dict[int, list] = {}
    values, values_rows, unloadable = [], [], []
    for row in rows:
        if row.item_content_type_id is not None and row.item_id is not None:
            by_type.setdefault(row.item_content_type_id, []).append(row)
        elif row.item_id is None and row.item_value is not None:
            values.append(row.item_value)
            values_rows.append(row)
        elif row.item_key.startswith("k:") and isinstance(row.item_value, dict):
            values.append(Record(row.item_value, key=row.item_id))  # a keyed record
            values_rows.append(row)
        else:  # its model's content type is gone, or its value could not be stored
            unloadable.append(row)
    if unloadable:
        yield [], [], unloadable
    for typed_rows in by_type.values():
        type_id = typed_rows[0].item_content_type_id
        model = ContentType.objects.db_manager(using).get_for_id(type_id).model_class()
        if model is None:
            yield [], [], typed_rows
            continue
        for start in range(0, len(typed_rows), BATCH):
            yield _load(model, typed_rows[start:start + BATCH], using)
    if values:
        yield values, values_rows, []


def _load(model, rows: list, using: str):
    """The QuerySet of the rows' items that still exist, those rows, and the others."""
    pks, absent = {}, []
    for row in rows:
        try:
            pks[row] = model._meta.pk.to_python(row.item_id)
        except ValidationError:
            absent.append(row)
    items = model._default_manager.using(using).filter(pk__in=list(pks.values()))
    found = {str(pk) for pk in items.values_list("pk", flat=True)}
    present = [row for row in pks if str(pks[row]) in found]
    absent.extend(row for row in pks if str(pks[row]) not in found)
    return items, present, absent
