"""The item loop: one pipeline over items, in a transaction, a savepoint per item.

Local runs and Celery chunks both come here. The flow-control table of
:mod:`datapipe.exceptions` is implemented in :meth:`Engine._process`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from django.db import DEFAULT_DB_ALIAS
from django.db.models import QuerySet
from django.utils import timezone

from . import signals
from .buffer import ItemRecord, SaveBuffer
from .errors import ErrorCollector, ErrorResolver
from .exceptions import InvalidItems, PipeBreak, PipeContinue, PipeError, PipeIgnore
from .pipe import AttrDict, PipeState
from .registry import registry
from .report import COUNTS, RunReport
from .session import RunOptions
from .sources import check_items, iterate, model_key
from .tracking import Tracker
from .transactions import ItemSavepoints, RunTransaction

__all__ = ["Engine"]

logger = logging.getLogger("datapipe")


class Engine:
    """Runs the pipeline ``name`` once over items (no depends, no triggers: see Session)."""

    def __init__(self, name: str, options: RunOptions, context: AttrDict, triggered_by: str = ""):
        self.name = name
        self.cls = registry.get(name)
        self.options = options
        self.context = context
        self.triggered_by = triggered_by
        self.keep_results = (
            options.keep_results or self.cls.consumes_results() or bool(registry.triggers_of(name))
        )

    def run(self, items: Any, ledger=None) -> RunReport:
        """Process ``items``; return the report. ``PipeError`` and debug errors propagate.

        ``ledger`` (a :class:`datapipe.ledger.ChunkLedger`) runs the items as one
        chunk of an existing distributed run: its record is used instead of a new one,
        ``ledger.begin()`` opens the transaction, ``ledger.commit(report, context)`` replaces
        ``finish_run`` at its end (folding the counts in), and the record is not closed.
        """
        from .models import PipelineRun

        check_items(items, "run()'s items")
        default_alias = items.db if isinstance(items, QuerySet) else DEFAULT_DB_ALIAS
        using = self.options.using or default_alias
        report = RunReport(self.name)
        started = time.monotonic()
        self.ledger = ledger
        if ledger is not None:
            record = ledger.run
        else:
            record = PipelineRun.objects.using(using).create(pipeline_name=self.name)
        report.run_id = record.pk
        self.record = record
        logger.info("Run %s of %r started", record.pk, self.name)
        signals.run_started.send(self.cls, run=record, items=items)
        self.buffer = SaveBuffer(using)
        self.state = PipeState(self.context, sink=self.buffer)
        self.errors = ErrorCollector(self.name, using)
        self.tracker = Tracker(self.name, using, self.triggered_by, enabled=self.cls.track)
        self.resolver = ErrorResolver(self.name, using)
        self.report = report
        failure = None
        try:
            with RunTransaction(using, self.options.atomic) as self.tx:
                self._run(items, record)
        except BaseException as exc:
            failure = exc
            raise
        finally:
            self.state.local.clear()
            report.errors = self.errors.captured
            report.elapsed = time.monotonic() - started
            try:
                self.errors.save(record)  # after the transaction: rows survive its rollback
                if ledger is None:
                    self._close_record(record, failure)
            except Exception:
                if failure is None:
                    raise
                # The run's own failure is the one to raise; this one is logged.
                logger.exception("Could not record the end of run %s of %r", record.pk, self.name)
            logger.info("Run %s %s: %s", record.pk, "failed" if failure else "finished", report)
            signals.run_finished.send(self.cls, run=record, report=report)
        return report

    def _run(self, items, record) -> None:
        if self.ledger is not None:
            self.ledger.begin()
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
        with ItemSavepoints(self.tx.using) as savepoints:
            for item in self._progress(iterate(prepared, self.options.chunksize), prepared):
                if seen is not None:
                    seen.add(model_key(item))
                if not self._process(item, savepoints):
                    break
                if len(self.buffer.pending) >= self.options.chunksize or (
                    self.buffer.size >= self.options.chunksize
                ):
                    self._flush(results)
                    self._checkpoint(record)
        if filtering:
            self.tracker.forget_filtered(items, prepared, None if self.report.broke else seen)
        self._flush(results)
        self._unattributed(pipe.finish, results)
        self._flush(results)
        self._fill_record(record)
        if self.ledger is not None:
            self.errors.save(record)  # in the chunk's transaction: written once per chunk
            self.ledger.commit(self.report, self.context)
        else:
            pipe.finish_run(record)

    def _process(self, item, savepoints: ItemSavepoints) -> bool:
        """Process one item by the flow-control table; False stops the loop."""
        report = self.report
        record = self.buffer.begin(item)
        report.processed += 1
        savepoints.begin()
        try:
            result = self.cls(item, state=self.state).process()
        except PipeContinue as flow:
            savepoints.commit()
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
            savepoints.commit()
            report.succeeded += 1
        record.result = result
        self.buffer.keep(record)
        return True

    def _roll_back(self, record: ItemRecord, savepoints: ItemSavepoints) -> None:
        savepoints.rollback()
        self.buffer.drop(record)

    def _failed(self, item, exc: BaseException) -> None:
        self.report.errored += 1
        error = self.errors.add(item, exc)
        logger.warning("%s failed on %s: %s: %s", self.name, error.item_repr, error.error_type,
                       error.error_message)
        signals.item_failed.send(self.cls, item=item, exception=exc, run=self.record)

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
        if self.keep_results:
            results.extend(record.result for record in records if record.result is not None)

    def _checkpoint(self, record) -> None:
        """Between batches: commit when not atomic, and write the errors met so far."""
        if not self.options.atomic:
            self.tx.checkpoint()
            self.errors.save(record)

    def _progress(self, iterator, items):
        if not self.options.progress:
            return iterator
        from tqdm import tqdm

        total = items.count() if isinstance(items, QuerySet) else (
            len(items) if isinstance(items, Sequence) else None
        )
        return tqdm(iterator, total=total, desc=self.name, unit="item")

    def _fill_record(self, record) -> None:
        for name in (*COUNTS, "broke"):
            setattr(record, name, getattr(self.report, name))

    def _close_record(self, record, failure) -> None:
        self._fill_record(record)
        record.status = record.Status.FAILED if failure else record.Status.DONE
        if failure is not None:
            record.message = f"{type(failure).__name__}: {failure}"[:2000]
        record.chunks_done = 1
        record.finished_at = timezone.now()
        record.save()
