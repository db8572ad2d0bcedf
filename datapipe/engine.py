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

from . import changes, signals
from .buffer import ItemRecord, SaveBuffer
from .concurrency import fetcher_for
from .errors.store import ErrorCollector, ErrorResolver
from .errors.text import readable
from .exceptions import (
    ConnectionClosed,
    ErrorThresholdExceeded,
    InvalidItems,
    PipeBreak,
    PipeContinue,
    PipeError,
    PipeIgnore,
)
from .heap import frozen_heap
from .identity import tracked_identity
from .items import check_items, distinct_rows, iterate
from .lifecycle import RunRecord, describe
from .options import RunOptions, check_retry
from .pipe import AttrDict, PipeState
from .registry import registry
from .report import RunReport
from .retry import RetryQueue
from .thresholds import RATE_JUDGED_FROM, Thresholds
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
        self._policies(options)

    def _policies(self, options: RunOptions) -> None:
        """Retry and error thresholds: the session's, else the pipe's (checked here)."""
        retry = options.retry if options.retry is not None else self.cls.retry
        try:
            self.retry = check_retry(retry)
        except TypeError as exc:
            raise TypeError(f"{self.cls.__qualname__}: {exc}") from None
        self.retries = RetryQueue()
        self.thresholds = Thresholds.of(self.cls, options)
        self.earlier = (0, 0)  # (processed, errored) before this run, see _judge
        if self.thresholds.active:
            self.earlier = self.record.earlier_counts()
        # The count of processed items at which the rate is judged first (0: never, as
        # the loop only sees counts from 1 on): one comparison per item.
        self.rate_judged_at = 0
        if self.thresholds.max_error_rate is not None:
            self.rate_judged_at = max(RATE_JUDGED_FROM - self.earlier[0], 1)

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
                with frozen_heap():
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
        # One line per run; at WARNING when items errored (each was logged at INFO).
        logger.log(logging.WARNING if report.errored else logging.INFO,
                   "Run %s finished: %s", run.pk, report)
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
        self.tracker.fresh = self._first_run(prepared)
        filtering = prepared is not items
        seen = set() if filtering and not isinstance(prepared, (QuerySet, Sequence)) else None
        results = self.report.results if self.keep_results else []
        batch = self.options.chunksize
        # The fetcher first: its refusal of queries in fetch() wraps the savepoints' wrapper.
        with self.fetcher, ItemSavepoints(self.using) as savepoints:
            fetched = self.fetcher.ahead(iterate(prepared, batch))
            for item, instance, pending in self._progress(fetched, prepared):
                if seen is not None:
                    seen.add(tracked_identity(item, self.using))
                if not self._process(item, instance, pending, savepoints):
                    break
                if self.retries and not self._retry(savepoints):
                    break
                if self.report.processed == self.rate_judged_at:
                    self._judge()
                if self.report.processed % batch == 0 or self.buffer.size >= batch:
                    self._flush(results)
                    self._checkpoint()
            else:
                while self.retries:  # nothing else left to do: wait for the next one due
                    if not self._retry(savepoints, wait=True):
                        break
            self._give_up_retries()
        self._judge(final=True)
        if filtering:
            self.tracker.forget_filtered(items, prepared, None if self.report.broke else seen)
        self._flush(results)
        self._unattributed(pipe.finish, results)
        self._flush(results)

    def _first_run(self, prepared) -> bool:
        """Whether no item of the run can have a tracker under the pipeline, so that the
        flushes need not look old outputs up: the pipeline has none now, no other run
        can write one while this one runs (it holds the pipeline's lock for its one
        transaction: local and atomic), and no item comes twice (:func:`distinct_rows`)."""
        return (
            self.tracker.enabled and self.options.atomic and not self.record.shared_lock
            and distinct_rows(prepared) and self.tracker.untracked()
        )

    def _process(self, item, instance, pending, savepoints: ItemSavepoints,
                 tries: int = 1) -> bool:
        """Process one item (its ``instance`` of the pipeline, whose fetch is ``pending``)
        by the flow-control table, on its try number ``tries``; False stops the loop."""
        report = self.report
        record = self.buffer.begin(item)
        if tries == 1:
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
            if self.retry is not None and not self.options.debug and (
                    self.retry.applies(exc, tries)):
                report.retried += 1
                self.retries.push(time.monotonic() + self.retry.delay(tries), (item, tries, exc))
                return True
            self._failed(item, exc, tries)
            if self.options.debug:
                raise
            # The row is captured: free the frames (and the items their locals hold).
            exc.__traceback__ = None
            self._judge()
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

    def _retry(self, savepoints: ItemSavepoints, wait: bool = False) -> bool:
        """Try again the items whose retry is due (``wait``: sleep until the next one is,
        when no other item is left); False when one stops the loop."""
        due = self.retries.wait_next() if wait else self.retries.pop_due()
        for position, (item, tries, _) in enumerate(due):
            instance, pending = self.fetcher.again(item)
            if not self._process(item, instance, pending, savepoints, tries + 1):
                for left in due[position + 1:]:
                    self.retries.push(0, left)  # given up below, with the others
                return False
        return True

    def _give_up_retries(self) -> None:
        """Items still waiting for a retry when the loop stopped (a break): collected
        with their last failure, never dropped."""
        for item, tries, exc in self.retries.pop_due(float("inf")):
            self._failed(item, exc, tries)

    def _judge(self, final: bool = False) -> None:
        """Raise :class:`ErrorThresholdExceeded` when more items failed than allowed:
        (see :class:`~datapipe.thresholds.Thresholds`), over the whole run: a chunk
        counts the chunks finished before it."""
        if not self.thresholds.active:
            return
        try:
            self.thresholds.judge(self.name, self.report.processed + self.earlier[0],
                                  self.report.errored + self.earlier[1], final)
        except ErrorThresholdExceeded as exceeded:
            exceeded.errored_here = self.report.errored  # this part's error rows (a chunk)
            raise

    def _failed(self, item, exc: BaseException, attempts: int = 1) -> None:
        self.report.errored += 1
        error = self.errors.add(item, exc, attempts)
        logger.info("%s failed on %s: %s: %s", self.name, error.item_repr, error.error_type,
                    error.error_message)
        signals.item_failed.send(self.cls, item=item, exception=exc, run=self.record.run)

    def _unattributed(self, hook, arg):
        """Call ``prepare``/``finish``: outputs they buffer belong to no item."""
        record = self.buffer.begin(None)
        value = hook(arg)
        if record.objects or record.saved or record.updates:
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
            self._judge()
        if self.options.dry_run:
            for record in records:
                changes.created(record.outputs())
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
        from .progress import iterate as progress

        total = items.count() if isinstance(items, QuerySet) else (
            len(items) if isinstance(items, Sequence) else None
        )
        return progress(iterator, self.name, "item", total)
