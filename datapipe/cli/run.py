"""``datapipe run NAME [--model app_label.Model]``: run a pipeline on a model's rows (or
on what its ``source()`` returns), locally or on Celery workers."""

from __future__ import annotations

import argparse
import time

from django.apps import apps
from django.core.exceptions import FieldError, ValidationError
from django.db import DatabaseError, transaction

from ..exceptions import ErrorThresholdExceeded, InvalidItems, PipeError
from ..options import SELECT
from ..progress import Progress, is_terminal
from ..registry import registry
from ..report import COUNTS
from ..session import get_session
from .base import CommandFailed, Subcommand, UsageError

__all__ = ["Run", "allow_errors_argument", "check_errors", "model_items"]

#: Seconds between two progress polls of ``run --celery --wait``.
POLL_SECONDS = 0.5


def allow_errors_argument(parser) -> None:
    """``--allow-errors``: exit status 0 even when the runs ended with errored items."""
    parser.add_argument("--allow-errors", action="store_true",
                        help="Exit with status 0 even when items errored (by default a run "
                             "that ends with errored items exits with status 1).")


def check_errors(errored: int, allow_errors: bool, what: str) -> None:
    """Raise :class:`CommandFailed` (exit status 1) when ``errored`` items, unless allowed."""
    if errored and not allow_errors:
        raise CommandFailed(f"{what} ended with {errored} errored items (--allow-errors accepts "
                     "them).")


def errored_in(report) -> int:
    """Errored items of a report and of every report chained to it."""
    return report.errored + sum(errored_in(r) for r in (*report.dependencies, *report.triggered))


def model_items(label: str, filters: list[str]):
    """The QuerySet of ``label``'s rows kept by the ``field=value`` filters."""
    try:
        model = apps.get_model(label)
    except (LookupError, ValueError) as exc:
        raise UsageError(f"Unknown model {label!r}: give it as app_label.Model.") from exc
    lookups = {}
    for text in filters:
        field, sep, value = text.partition("=")
        if not sep or not field:
            raise UsageError(f"Bad filter {text!r}: write it as field=value.")
        if field.endswith("__in"):
            value = value.split(",") if value else []
        elif field.endswith("__isnull"):
            if value.lower() not in ("true", "false"):
                raise UsageError(f"Bad filter {text!r}: __isnull takes true or false.")
            value = value.lower() == "true"
        lookups[field] = value
    try:
        items = model._default_manager.filter(**lookups)
        with transaction.atomic(using=items.db):  # a value the database refuses (a bad
            items.exists()                        # regex): said now, not mid-run
    except (FieldError, ValidationError, ValueError, TypeError, DatabaseError) as exc:
        raise UsageError(f"Bad filter on {label}: {exc}") from exc
    return items


class Run(Subcommand):
    """``datapipe run NAME [--model app_label.Model [--filter F=V ...]] [--chunksize N]
    [--select all|new|failed] [--dry-run] [--celery [--queue Q] [--wait]]
    [--progress | --no-progress] [--allow-errors]``.

    Exit status 1 when the run (or a run it chained) ended with errored items, unless
    ``--allow-errors``, or when it failed; with ``--celery`` and no ``--wait``, 0 once
    sent.
    """

    name = "run"
    help = "Run a pipeline on the rows of a model, or on its source()."
    description = ("Run a pipeline on the rows of a model (those kept by --filter), with its "
                   "depends and triggers, and print the reports. Locally by default; with "
                   "--celery, sent to the workers in chunks (--wait follows it to the end). "
                   "Exit status 1 when items errored, unless --allow-errors.")

    @classmethod
    def add_arguments(cls, parser) -> None:
        parser.add_argument("name", help="The pipeline's name.")
        parser.add_argument("--model", help="The items' model, as app_label.Model (default: "
                                               "what the pipeline's source() returns).")
        parser.add_argument("--filter", action="append", default=[], metavar="FIELD=VALUE",
                            help="Keep the rows where FIELD (a lookup, e.g. number__gt) is "
                                 "VALUE; repeat for more.")
        parser.add_argument("--chunksize", type=int,
                            help="Items per batch locally; items per Celery chunk with --celery.")
        parser.add_argument("--celery", action="store_true", help="Run on Celery workers.")
        parser.add_argument("--queue", help="The Celery queue (with --celery).")
        parser.add_argument("--wait", action="store_true",
                            help="With --celery: show progress until the run is done.")
        parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                            help="Show a progress bar on stderr (default: when stderr is a "
                                 "terminal; elsewhere a line every few seconds).")
        parser.add_argument("--select", choices=SELECT, default="all",
                            help="new: only items never processed into outputs and not "
                                 "failing; failed: only items with an open error row.")
        parser.add_argument("--dry-run", action="store_true",
                            help="Run everything, roll it all back, and print what would "
                                 "have been created and deleted, per model.")
        allow_errors_argument(parser)

    def handle(self, name, model, filter, chunksize, celery, queue, wait, progress,
               allow_errors, select, dry_run, **options) -> None:
        cls = registry.get(name)  # PipelineNotFound: a usage error
        if model is not None:
            items = model_items(model, filter)
        elif filter:
            raise UsageError("--filter goes with --model.")
        else:
            try:
                items = cls.items_from_source()
            except InvalidItems as exc:
                raise UsageError(f"{exc} Or give --model.") from exc
        if chunksize is not None and chunksize < 1:
            raise UsageError("--chunksize must be a positive integer.")
        if not celery:
            if queue or wait:
                raise UsageError("--queue and --wait go with --celery.")
            try:
                report = get_session(chunksize=chunksize, progress=progress).run(
                    items, name, select=select, dry_run=dry_run)
            except (PipeError, ErrorThresholdExceeded) as exc:
                raise CommandFailed(f"Run of {name!r} failed: {type(exc).__name__}: {exc}") from exc
            self.print_report(report)
            if dry_run:
                self.print_changes(report.changes)
            check_errors(errored_in(report), allow_errors, f"Run {report.run_id} of {name!r}")
            return
        if dry_run:
            raise UsageError("--dry-run runs locally only (a Celery run commits chunk by chunk).")
        handle = get_session().run_in_celery(
            items, name, celery_chunksize=chunksize or 10, queue=queue, select=select
        )
        self.say(f"Run {handle.id} of {name!r} sent to Celery; follow it with "
                 f"`manage.py datapipe status {handle.id}`.")
        if wait:
            state = self.follow(handle, progress)
            if state["status"] == "failed":
                raise CommandFailed(f"Run {handle.id} of {name!r} failed: {state['message']}")
            check_errors(state["errored"], allow_errors, f"Run {handle.id} of {name!r}")

    def print_changes(self, changes: dict) -> None:
        """A dry run's changes, one line per model."""
        self.say("Dry run: everything was rolled back. It would have:")
        for label, counted in sorted(changes.items()):
            self.say(f"  {label}: created {counted['created']}, deleted {counted['deleted']}")
        if not changes:
            self.say("  changed nothing.")

    def print_report(self, report, indent: str = "") -> None:
        """The report of a run, its depends' and triggered runs' around it."""
        for dependency in report.dependencies:
            self.print_report(dependency, indent + "(depends) ")
        self.say(f"{indent}{report} (run {report.run_id})")
        for triggered in report.triggered:
            self.print_report(triggered, indent + "(triggered) ")
        if report.errored and not indent:
            self.say(f"See the errors with `manage.py datapipe errors --pipeline "
                     f"{report.pipeline}`.")

    def follow(self, handle, show: bool | None) -> dict:
        """Chunks done until the run is over (a bar when ``show``, by default when stderr
        is a terminal), then its counts; returns its last progress."""
        stream = self.stderr
        show = is_terminal(stream) if show is None else show
        bar = Progress(f"run {handle.id}", "chunk", file=stream) if show else None
        try:
            while True:
                state = handle.progress()
                if bar is not None:
                    bar.set(state["chunks_done"], state["chunks_total"],
                            processed=state["processed"], errored=state["errored"])
                if state["status"] != "running":
                    break
                time.sleep(POLL_SECONDS)
        finally:
            if bar is not None:
                bar.close()
        counts = ", ".join(f"{state[name]} {name}" for name in COUNTS)
        self.say(f"Run {handle.id} {state['status']}: {counts}")
        return state
