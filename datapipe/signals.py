"""Signals sent by datapipe. Receivers' return values are ignored.

``run_started(sender=pipeline_class, run=PipelineRun, items=...)``
    Before ``prepare`` of a run (local run or Celery chunk).
``run_finished(sender=pipeline_class, run=PipelineRun, report=RunReport)``
    After a run committed or rolled back; ``report`` holds the counts.
``item_failed(sender=pipeline_class, item=..., exception=..., run=PipelineRun)``
    When an item raised an unhandled exception that is collected as an error.
``error_group_opened(sender=PipelineError, pipeline=str, signature=str, error=PipelineError)``
    After an error row is written whose failure (signature) had no open row under its
    pipeline: a new kind of failure. Sent after the rows are committed.
``scheduled_run_skipped(sender=pipeline_class, pipeline=str)``
    When a scheduled run is skipped because the previous one still runs.
"""

from django.dispatch import Signal

run_started = Signal()
run_finished = Signal()
item_failed = Signal()
error_group_opened = Signal()
scheduled_run_skipped = Signal()
