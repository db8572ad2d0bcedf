"""A pipeline with what it chains: its depends before it, its triggers after it.

:func:`run_chain` is what ``Session.run`` does and what a Celery worker does for one
chunk: the only difference is the record the main run reports to. Every run that the
chain starts records the run that started it as its ``parent`` (and a trigger, the run
whose results it processes, as ``triggered_by``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db import transaction
from django.db.models import QuerySet

from . import changes
from .engine import Engine
from .exceptions import PipelineCycle
from .identity import database_for
from .items import check_items
from .lifecycle import LocalRecord, RunRecord
from .options import RunOptions
from .pipe import AttrDict
from .registry import registry
from .report import RunReport
from .selection import select_items
from .transactions import serialised

__all__ = ["run_chain", "run_requested", "run_triggers"]


def run_requested(name: str, items: Any, options: RunOptions, context: AttrDict) -> RunReport:
    """What ``Session.run`` does: the items ``options.select`` keeps, then
    :func:`run_chain`, or for a dry run all of it in a transaction rolled back at the
    end, with the report's ``changes`` counted meanwhile."""
    using = database_for(items, options.using)
    items = select_items(items, name, options.select, using)
    if not options.dry_run:
        return run_chain(name, items, options, context)
    with changes.counting() as counted:
        try:
            with transaction.atomic(using=using):
                report = run_chain(name, items, options, context)
                raise _RolledBack(report)
        except _RolledBack as rolled_back:
            report = rolled_back.report
    report.changes = counted
    return report


class _RolledBack(Exception):
    """Leaves a dry run's transaction, rolling it back, with its report."""

    def __init__(self, report):
        self.report = report


def run_chain(name: str, items: Any, options: RunOptions, context: AttrDict, *,
              record: RunRecord | None = None, parent=None, triggered_by=None,
              active: tuple[str, ...] = ()) -> RunReport:
    """Run the pipeline ``name`` over ``items`` with its depends and triggers.

    ``record``: the record the run reports to (default: a new local run whose parent
    is ``parent`` and which ``triggered_by`` triggered). The depends run first on the
    same items, each in its own transaction; the triggers after the run committed, on
    its results. Returns the run's report, holding theirs.
    """
    if name in active:  # registered after the start-up check: never loop
        raise PipelineCycle([*active, name])
    active = (*active, name)
    check_items(items, "run()'s items")
    depends = registry.depends_of(name)
    for dependency in depends:
        registry.get(dependency)  # PipelineNotFound before anything runs
    if depends and not isinstance(items, (QuerySet, Sequence)):
        items = list(items)  # the depends and the run itself each iterate the items
    using = record.using if record is not None else database_for(items, options.using)
    with serialised(using):
        return _run_chain(name, items, options, context, record, parent, triggered_by, active,
                          depends, using)


def _run_chain(name, items, options, context, record, parent, triggered_by, active, depends,
               using) -> RunReport:
    if record is None:
        # prune=True is a full refresh of the pipeline asked for, not of those it chains.
        record = LocalRecord(name, using, parent=parent, triggered_by=triggered_by,
                             prune=options.prune and parent is None)
    run = record.run
    try:
        dependency_reports = [
            run_chain(dependency, items, options, context, parent=run, active=active)
            for dependency in depends
        ]
    except BaseException as exc:
        record.rolled_back(RunReport(name, run_id=run.pk), exc)
        raise
    source = triggered_by.pipeline_name if triggered_by is not None else ""
    report = Engine(name, options, context, record, triggered_by=source).run(items)
    report.dependencies = dependency_reports
    if record.runs_triggers:
        report.triggered = run_triggers(name, report.results, options, context, run, active)
    return report


def run_triggers(name: str, results: list, options: RunOptions, context: AttrDict, run,
                 active: tuple[str, ...] = ()) -> list[RunReport]:
    """Run the pipelines that ``name`` triggers on ``results``, the results of ``run``.

    Called by :func:`run_chain` after the run committed, and by a Celery worker for a
    chunk whose work committed before its triggers ran (its worker died, or lost its
    database connection).
    """
    active = active or (name,)
    return [
        run_chain(target, results, options, context, parent=run, triggered_by=run,
                  active=active)
        for target in registry.triggers_of(name)
    ]
