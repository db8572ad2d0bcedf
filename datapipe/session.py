"""``Session``: runs pipelines with their depends before and their triggers after.

``sess.run(items, name)`` runs locally; ``sess.run_in_celery(...)`` splits the items
into chunks for Celery workers. Both go through the same engine.
"""

from __future__ import annotations

from typing import Any

from .items import check_items, default_pipeline_name
from .options import SESSION_OPTIONS, RunOptions, refuse_unknown
from .pipe import AttrDict
from .registry import registry
from .report import RunReport

__all__ = ["RunOptions", "Session", "get_session"]

_MISSING = object()


class Session:
    """Options shared by the runs it starts, and the context they share.

    ``debug``: re-raise unhandled exceptions, rolling the run back (default
    ``DATAPIPE["DEBUG"]``). ``chunksize``: keyset page, flush and bulk-insert size
    (default 2000). ``atomic``: the whole run in one transaction (default True; False
    commits after every flush). ``context``: the initial context; ``sess.context`` stays
    readable after the runs. ``progress``: a bar on stderr (default: when it is a
    terminal). ``keep_results``: keep results even when nothing consumes them.
    ``using``: the database alias (default: the QuerySet's, else ``default``).
    ``concurrency``: for how many items at a time ``fetch()`` runs, in every pipeline
    the session runs (default: each pipe's ``concurrency`` attribute, 1 unless set).
    ``retry``, ``max_errors``, ``max_error_rate``: override the pipes' attributes of
    these names for every pipeline the session runs (see :class:`datapipe.Retry`).
    """

    def __init__(self, *, debug=None, chunksize=None, atomic=None, context=None,
                 progress=None, keep_results=False, using=None, concurrency=None,
                 retry=None, max_errors=None, max_error_rate=None, **unknown):
        refuse_unknown("get_session()", unknown, SESSION_OPTIONS)
        self.options = RunOptions.resolve(
            debug=debug, chunksize=chunksize, atomic=atomic, progress=progress,
            keep_results=keep_results, using=using, concurrency=concurrency, retry=retry,
            max_errors=max_errors, max_error_rate=max_error_rate,
        )
        if context is not None and not isinstance(context, dict):
            raise TypeError(f"context must be a dict, not {type(context).__name__}")
        self.context = AttrDict(context or {})

    def run(self, items: Any = _MISSING, name: str | None = None, *, select: str = "all",
            dry_run: bool = False, prune: bool = False, **kwargs) -> RunReport:
        """Run the pipeline ``name`` over ``items`` locally; return its report.

        ``run(name, items)`` is accepted too, and ``run(name)`` processes what the
        pipeline's ``source()`` returns. Without a name, the QuerySet's or first item's
        ``get_default_pipe_name()`` names the pipeline. The pipelines in ``depends`` run
        first on the same items; after the run commits, the pipelines it triggers run on
        its results. The report's ``dependencies`` and ``triggered`` hold their reports.

        ``select``: ``"all"`` items (default), ``"new"`` ones only (no tracker under this
        pipeline, no open error row), or ``"failed"`` ones only (an open error row).
        ``dry_run``: run everything, then roll it all back (error rows included); the
        report's ``changes`` says what would have been created and deleted.
        ``prune``: a full refresh: delete the outputs of items tracked under the
        pipeline that this run did not process.
        """
        options = self.options.for_run(select=select, dry_run=dry_run, prune=prune)
        items, name = _arguments(items, name, kwargs, self.context)
        from .chain import run_requested  # not at import time: it imports the models

        return run_requested(name, items, options, self.context)

    def run_in_celery(self, items=_MISSING, name=None, celery_chunksize=10, queue=None, *,
                      select: str = "all", prune: bool = False, dry_run: bool = False,
                      **task_options):
        """Run the pipeline across Celery workers, in chunks; return a handle.

        ``select`` and ``prune`` as for :meth:`run`; a dry run is local only.
        ``task_options`` go to Celery's ``apply_async``: only those of
        :data:`datapipe.distributed.dispatch.TASK_OPTIONS` are accepted.
        """
        from .distributed.dispatch import dispatch

        if dry_run is not False:
            raise TypeError("run_in_celery() does not take dry_run: a dry run rolls back one "
                            "transaction, and chunks commit on their own. Use run(..., "
                            "dry_run=True) to see what a run would change.")
        options = self.options.for_run(select=select, prune=prune)
        items, name = _arguments(items, name, {}, self.context, "run_in_celery()")
        return dispatch(self, items, name, celery_chunksize=celery_chunksize, queue=queue,
                        options=options, **task_options)


def _arguments(items, name, kwargs, context, where="run()"):
    """Accept ``(items, name)``, ``(name, items)``, ``(name)`` (the pipeline's
    ``source()``) and keywords; find a default name."""
    if "items" in kwargs:
        if items is not _MISSING:
            raise TypeError(f"{where} got items twice")
        items = kwargs.pop("items")
    refuse_unknown(where, kwargs, ("items", "name"))
    if isinstance(items, str) and name is None:
        items, name = _MISSING, items  # run("name"): the pipeline's source()
    if items is _MISSING:
        if name is None:
            raise TypeError(f"{where} needs a pipeline name, or items to process")
        if not isinstance(name, str):
            raise TypeError(f"The pipeline name must be a string, not {type(name).__name__}")
        return registry.get(name).items_from_source(context), name
    if isinstance(items, str) and not isinstance(name, str) and name is not None:
        items, name = name, items
    if name is None:
        name, items = default_pipeline_name(items)
    elif not isinstance(name, str):
        raise TypeError(f"The pipeline name must be a string, not {type(name).__name__}")
    check_items(items, "run()'s items")
    registry.get(name)  # PipelineNotFound before anything runs
    return items, name


def get_session(**options) -> Session:
    """A :class:`Session` with the given options (see its docstring)."""
    return Session(**options)
