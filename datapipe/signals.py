"""Signals sent by datapipe. Receivers' return values are ignored.

``run_started(sender=pipeline_class, run=PipelineRun, items=...)``
    Before ``prepare`` of a run (local run or Celery chunk).
``run_finished(sender=pipeline_class, run=PipelineRun, report=RunReport)``
    After a run committed or rolled back; ``report`` holds the counts.
``item_failed(sender=pipeline_class, item=..., exception=..., run=PipelineRun)``
    When an item raised an unhandled exception that is collected as an error.
"""

from django.dispatch import Signal

run_started = Signal()
run_finished = Signal()
item_failed = Signal()
