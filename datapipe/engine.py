"""The item loop: one pipeline over items, in a transaction, a savepoint per item.

Local runs and Celery chunks both come here, each with its record
(:mod:`datapipe.lifecycle`). The flow-control table of :mod:`datapipe.exceptions` is
implemented in :meth:`Engine._process`. Depends and triggers are :mod:`datapipe.chain`'s;
each item's ``fetch()``, run ahead for several items at once, :mod:`datapipe.concurrency`'s.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from django.db.models import QuerySet

from . import signals
from .buffer import ItemRecord, SaveBuffer
from .concurrency import fetcher_for
from .errors.store import ErrorCollector, ErrorResolver
from .errors.text import readable
from .exceptions import (
    ConnectionClosed,
    InvalidItems,
    PipeBreak,
    PipeContinue,
    PipeError,
    PipeIgnore,
)
from .identity import model_identity
from .lifecycle import RunRecord, describe
from .options import RunOptions
from .pipe import AttrDict, PipeState
from .registry import registry
from .report import RunReport
from .items import check_items, iterate
from .tracking import Tracker
from .transactions import ItemSavepoints, RunTransaction, register_on_commit

__all__ = ["Engine"]

logger = logging.getLogger("datapipe")


class Engine:
    """Runs the pipeline ``name`` once over items, reporting to ``record``.

    ``triggered_by`` names the pipeline whose results are the items (for trackers).
    """

    def __init__(self, name: str, options: RunOptions, context: AttrDict, record: RunRecord,
                 triggered_by: str = ""):
        self.name = name
        self.cls = registry.get(name)
        self.options = options
        self.context = context
        self.record = record
        self.using = record.using
        self.keep_results = (
            options.keep_results or self.cls.consumes_results() or bool(registry.triggers_of(name))
        )
        self.report = RunReport(name, run_id=record.run.pk)
        self.buffer = SaveBuffer(self.using)
        self.state = PipeState(context, buffer=self.buffer)
        # Chunks of a distributed run share its cap of stored pages per failure.
        self.errors = ErrorCollector(name, self.using,
                                     run=record.run if record.run.distributed else None)
        self.tracker = Tracker(name, self.using, triggered_by, enabled=self.cls.track)

    def run(self, items: Any) -> RunReport:
        """Process ``items``; return the report. ``PipeError`` and debug errors propagate."""
        check_items(items, "run()'s items")
        record, report, run = self.record, self.report, self.record.run
        started = time.monotonic()
        logger.info("Run %s of %r started", run.pk, self.name)
        signals.run_started.send(self.cls, run=run, items=items)
        self.resolver = ErrorResolver(self.name, self.using)
        try:
            with RunTransaction(self.using, self.options.atomic, lock=self.name,
                                shared=record.shared_lock) as self.tx:
                record.opened()
                self._run(items)
                record.committing(report, self.context, self.errors)
        except BaseException as exc:
            if isinstance(exc, ConnectionClosed):
                self._closed_connection(exc)
            self._ended(started)
            self._save_errors()
            record.rolled_back(report, exc)
            logger.info("Run %s failed: %s", run.pk, report)
            signals.run_finished.send(self.cls, run=run, report=report)
            raise
        self._ended(started)
        self._save_errors()
        record.committed(report, self.cls(state=self.state))
        logger.info("Run %s finished: %s", run.pk, report)
        signals.run_finished.send(self.cls, run=run, report=report)
        return report

    def _ended(self, started: float) -> None:
        self.state.local.clear()
        self.report.errors = self.errors.captured
        self.report.elapsed = time.monotonic() - started

    def _save_errors(self) -> None:
        """Write the error rows not written yet; a failure here is the run's, not raised
        (the outputs are committed or rolled back already)."""
        try:
            self.errors.save(self.record.run)
        except Exception as exc:
            logger.exception("Could not write the error rows of run %s", self.record.run.pk)
            self.report.message = f"error rows not written: {describe(exc)}"

    def _run(self, items) -> None:
        self.fetcher = fetcher_for(self.cls, self.state, self.options.concurrency)
        pipe = self.cls(state=self.state)
        prepared = self._unattributed(pipe.prepare, items)
        if prepared is None:
            raise InvalidItems(
                f"{self.cls.__qualname__}.prepare() returned None: return the items to process "
                "(return super().prepare(items) at the end)."
            )
        check_items(prepared, f"The value returned by {self.cls.__qualname__}.prepare()")
        filtering = prepared is not items
        seen = set() if filtering and not isinstance(prepared, (QuerySet, Sequence)) else None
        results = self.report.results if self.keep_results else []
        batch = self.options.chunksize
        # The fetcher first: its refusal of queries in fetch() wraps the savepoints' wrapper.
        with self.fetcher, ItemSavepoints(self.using) as savepoints:
            fetched = self.fetcher.ahead(iterate(prepared, batch))
            for item, instance, pending in self._progress(fetched, prepared):
                if seen is not None:
                    seen.add(model_identity(item, self.using))
                if not self._process(item, instance, pending, savepoints):
                    break
                if self.report.processed % batch == 0 or self.buffer.size >= batch:
                    self._flush(results)
                    self._checkpoint()
        if filtering:
            self.tracker.forget_filtered(items, prepared, None if self.report.broke else seen)
        self._flush(results)
        self._unattributed(pipe.finish, results)
        self._flush(results)

    def _process(self, item, instance, pending, savepoints: ItemSavepoints) -> bool:
        """Process one item (its ``instance`` of the pipeline, whose fetch is ``pending``)
        by the flow-control table; False stops the loop."""
        report = self.report
        record = self.buffer.begin(item)
        report.processed += 1
        savepoints.begin()
        try:
            result = self._call_process(item, instance, pending, savepoints)
        except ConnectionClosed:
            raise  # the transaction is gone with the connection: nothing to roll back
        except PipeContinue as flow:
            record.on_commit = savepoints.commit()
            result = item if flow.value is PipeContinue._unset else flow.value
            record.continued = True
            report.continued += 1
        except PipeIgnore:
            self._roll_back(record, savepoints)
            report.ignored += 1
            return True
        except PipeBreak:
            self._roll_back(record, savepoints)
            report.broke = True
            return False
        except PipeError:
            self._roll_back(record, savepoints)
            raise
        except Exception as exc:
            self._roll_back(record, savepoints)
            self._failed(item, exc)
            if self.options.debug:
                raise
            # The row is captured: free the frames (and the items their locals hold).
            exc.__traceback__ = None
            return True
        else:
            record.on_commit = savepoints.commit()
            report.succeeded += 1
        record.result = result
        self.buffer.keep(record)
        return True

    def _call_process(self, item, instance, pending, savepoints: ItemSavepoints):
        """``process()`` on ``item``, once its fetch is done (raising what fetch raised);
        :class:`ConnectionClosed` instead of whatever it returned or raised when it
        closed the database connection, so that the later items do not fail in its
        place."""
        try:
            self.fetcher.complete(instance, pending)
            return instance.process()
        finally:
            if savepoints.connection_closed:
                shown = readable(lambda: repr(item), "repr")[:200]
                raise ConnectionClosed(item, (
                    f"{shown} closed the database connection inside the run's transaction "
                    "(connection.close() in process()?): the run's work since its last "
                    "commit is lost, and the run stops here."
                ))

    def _closed_connection(self, exc: ConnectionClosed) -> None:
        """Collect the item that closed the connection, now that the transaction is over
        (inside the caller's ``atomic()`` no query can run: it is logged only)."""
        try:
            self._failed(exc.item, exc)
        except Exception:
            logger.exception("Run %s: could not collect %s", self.record.run.pk, exc)

    def _roll_back(self, record: ItemRecord, savepoints: ItemSavepoints) -> None:
        savepoints.rollback()
        self.buffer.drop(record)

    def _failed(self, item, exc: BaseException) -> None:
        self.report.errored += 1
        error = self.errors.add(item, exc)
        logger.warning("%s failed on %s: %s: %s", self.name, error.item_repr, error.error_type,
                       error.error_message)
        signals.item_failed.send(self.cls, item=item, exception=exc, run=self.record.run)

    def _unattributed(self, hook, arg):
        """Call ``prepare``/``finish``: outputs they buffer belong to no item."""
        record = self.buffer.begin(None)
        value = hook(arg)
        if record.objects or record.saved:
            self.buffer.keep(record)
        return value

    def _flush(self, results: list) -> None:
        """Insert pending outputs, replace the items' old outputs, collect results."""
        records = self.buffer.take()
        if not records:
            return
        failed = self.buffer.insert(records, before=self.tracker.revert)
        if failed:
            for record in failed:
                if record.continued:
                    self.report.continued -= 1
                else:
                    self.report.succeeded -= 1
                self._failed(record.item, record.error)
            failed_ids = {id(record) for record in failed}
            records = [record for record in records if id(record) not in failed_ids]
        self.tracker.write(records)
        self.resolver.resolve(record.item for record in records)
        for record in records:
            register_on_commit(self.using, record.on_commit)
        if self.keep_results:
            results.extend(record.result for record in records if record.result is not None)

    def _checkpoint(self) -> None:
        """Between batches: live counts; when not atomic, commit and write errors."""
        committing = not self.options.atomic
        self.record.progressed(self.report, committing)
        if committing:
            self.tx.checkpoint(between=lambda: self.errors.save(self.record.run))

    def _progress(self, iterator, items):
        if not self.options.progress:
            return iterator
        from tqdm import tqdm

        total = items.count() if isinstance(items, QuerySet) else (
            len(items) if isinstance(items, Sequence) else None
        )
        return tqdm(iterator, total=total, desc=self.name, unit="item")
