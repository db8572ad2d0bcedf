"""The demo, step by step: load, import (with a defect), error groups, fix, reprocess.

Each step prints what happened. Runs in-process on any database; with a Celery broker
configured the import runs on Celery workers instead.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable

from django.conf import settings
from django.db.models import Count, Min
from django.test.utils import override_settings

import datapipe
from datapipe.models import PipelineError, PipelineRun

from .dataset import airport_rows, source_name
from .models import Airport, RawAirport, State, StateSummary
from .registry import Registry

IMPORT = "airports.import"
CHECKED = 100  # airports that airports.check fetches from the registry, at each concurrency
LATENCY = 0.02  # seconds the registry takes per answer, as a remote API would


class Demo:
    """Runs the demo and writes its account of it through ``say``."""

    def __init__(self, say: Callable[[str], None], celery_timeout: float = 600):
        self.say = say
        self.celery_timeout = celery_timeout
        self.in_celery = bool(getattr(settings, "CELERY_BROKER_URL", ""))
        self.session = datapipe.get_session(context={"source": source_name()})

    def run(self) -> None:
        """Every step, in order."""
        database = settings.DATABASES["default"]
        self.say(f"Database: {database['ENGINE'].rsplit('.', 1)[-1]} ({database['NAME']})")
        if self.in_celery:
            self.say(f"Celery broker: {settings.CELERY_BROKER_URL} (the import runs on workers)")
        else:
            self.say("No CELERY_BROKER_URL: every pipeline runs locally, in this process.")
        self.load()
        self.first_import()
        errors = self.error_groups()
        self.fix_and_reprocess(errors)
        self.outputs()
        self.admin()
        self.fetch_concurrently()

    # Steps ----------------------------------------------------------------------------

    def load(self) -> None:
        rows = airport_rows()  # read_csv(..., key="iata"): records with an identity
        total = sum(1 for _ in rows)
        report = self.session.run(rows, "airports.load", select="new")
        self.heading(f"1. Load: {total} rows of {self.session.context.source}")
        self.say(
            f"   airports.load: {report.succeeded} rows staged as RawAirport, "
            f"{total - report.processed} already staged (left out by select=\"new\")"
        )

    def first_import(self) -> None:
        self.heading("2. Import, first version (settings.AIRPORTS_NA_IS_MISSING = False)")
        since = self.last_run()
        items = RawAirport.objects.all()
        with override_settings(AIRPORTS_NA_IS_MISSING=False):
            if self.in_celery:
                handle = self.session.run_in_celery(items, IMPORT, celery_chunksize=500)
                self.say(f"   sent to Celery as run #{handle.id}; waiting for the workers")
                handle.wait(timeout=self.celery_timeout)
                self.wait_for_chained_runs(since)
            else:
                self.session.run(items, IMPORT)
        self.runs_since(since)
        if not self.in_celery:  # a chunk's context stays on its worker
            self.say(f"   context shared by the chained runs: {dict(self.session.context)}")

    def error_groups(self):
        errors = PipelineError.objects.filter(pipeline_name=IMPORT, resolved=False)
        groups = (
            errors.values("signature", "error_type", "error_message")
            .annotate(items=Count("id"), first=Min("first_seen"))
            .order_by("-items")
        )
        self.heading(f"3. Error groups of {IMPORT}: {len(groups)} open, {errors.count()} items")
        for group in groups:
            items = errors.filter(signature=group["signature"]).order_by("item_repr")
            names = ", ".join(items.values_list("item_repr", flat=True)[:6])
            self.say(
                f"   {group['error_type']}: {group['error_message']}  x{group['items']}  "
                f"[{group['signature'][:10]}]  e.g. {names}"
            )
        return errors

    def fix_and_reprocess(self, errors) -> None:
        self.heading("4. The fix: \"NA\" means missing (AIRPORTS_NA_IS_MISSING = True); reprocess")
        since = self.last_run()
        with override_settings(AIRPORTS_NA_IS_MISSING=True):
            # Runs locally: the setting stands in for a code fix, and a changed setting
            # would not reach the workers, which run the code they started with.
            result = datapipe.reprocess(errors.order_by("pk"))
        self.say(f"   datapipe.reprocess(...) -> {result}")
        self.runs_since(since)
        still_open = PipelineError.objects.filter(pipeline_name=IMPORT, resolved=False).count()
        self.say(
            f"   open error rows of {IMPORT}: {still_open} "
            f"({result.resolved} resolved by this reprocess)"
        )

    def outputs(self) -> None:
        self.heading("5. Outputs")
        self.say(
            f"   {RawAirport.objects.count()} raw rows, {Airport.objects.count()} airports, "
            f"{State.objects.count()} states, {StateSummary.objects.count()} state summaries"
        )
        for summary in StateSummary.objects.select_related("state")[:5]:
            self.say(
                f"   {str(summary.state or 'unknown state'):<28} {summary.airports:>4} airports, "
                f"northernmost {summary.northernmost}, southernmost {summary.southernmost}"
            )
        exported = PipelineRun.objects.filter(pipeline_name=IMPORT).exclude(locations=[])
        for run in exported.order_by("pk"):
            self.say(f"   run #{run.pk} of {IMPORT} exported {run.succeeded} airports to "
                     f"{_shown(run.locations[0])} (its sink, written after the commit)")
        unknown = StateSummary.objects.filter(state=None).first()
        if unknown:
            self.say(
                f"   {'unknown state':<28} {unknown.airports:>4} airports "
                "(the reprocessed rows, counted by the trigger)"
            )

    def admin(self) -> None:
        self.heading("6. The admin: runs, error groups with their tracebacks, airports")
        manage = f"{_shown(sys.executable, 'python')} {_shown(settings.BASE_DIR / 'manage.py')}"
        self.say(f"   {manage} createsuperuser")
        self.say(f"   {manage} runserver")
        self.say("   then open http://127.0.0.1:8000/admin/")
        self.say("   (Datapipe > Pipeline errors: the KeyError group; Pipeline runs: every run)")

    def fetch_concurrently(self) -> None:
        airports = list(Airport.objects.order_by("iata")[:CHECKED])
        self.heading(
            f"7. I/O concurrency: airports.check fetches {len(airports)} airports from a registry "
            f"served on 127.0.0.1 ({LATENCY * 1000:g} ms per answer)"
        )
        seconds = {}
        with Registry(delay=LATENCY) as registry:
            for concurrency in (1, 25):
                # Locally even with workers: the registry is served by this process.
                session = datapipe.get_session(concurrency=concurrency,
                                               context={"registry": registry.url})
                started = time.monotonic()
                report = session.run(airports, "airports.check")
                seconds[concurrency] = time.monotonic() - started
                faster = (f"  ({seconds[1] / seconds[concurrency]:.0f}x faster)"
                          if concurrency > 1 else "")
                self.say(f"   concurrency {concurrency:>2}: {report.succeeded} airports checked, "
                         f"{report.ignored} differ, in {seconds[concurrency]:.2f} s{faster}")

    # Helpers ----------------------------------------------------------------------------

    @staticmethod
    def last_run() -> int:
        return PipelineRun.objects.order_by("-pk").values_list("pk", flat=True).first() or 0

    def runs_since(self, since: int) -> None:
        """A line per pipeline run since the run record ``since``, runs of chunks summed."""
        lines: dict[str, dict] = {}
        # In the order they ended: a run's depends before it, its triggers after it.
        for run in PipelineRun.objects.filter(pk__gt=since).order_by("finished_at", "pk"):
            line = lines.setdefault(run.pipeline_name, {
                "runs": 0, "processed": 0, "succeeded": 0, "ignored": 0, "errored": 0,
                "where": set(),
            })
            line["runs"] += 1
            for count in ("processed", "succeeded", "ignored", "errored"):
                line[count] += getattr(run, count)
            line["where"].add("on workers" if run.distributed else "")
        for name, line in lines.items():
            runs = f"{line['runs']} runs" if line["runs"] > 1 else "1 run"
            where = ", ".join(sorted(filter(None, line["where"])) + [runs])
            self.say(
                f"   {name:<18} {line['processed']:>5} processed, {line['succeeded']:>5} "
                f"succeeded, {line['ignored']:>3} ignored, {line['errored']:>3} errored  ({where})"
            )

    def wait_for_chained_runs(self, since: int) -> None:
        """Wait until the runs that chunks chained (depends, triggers) have finished too."""
        deadline = time.monotonic() + self.celery_timeout
        running = PipelineRun.objects.filter(pk__gt=since, status=PipelineRun.Status.RUNNING)
        while running.exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"runs still running after {self.celery_timeout}s")
            time.sleep(0.2)

    def heading(self, text: str) -> None:
        self.say("")
        self.say(text)


def _shown(path, outside: str | None = None) -> str:
    """``path`` relative to the working directory when under it (else ``outside``)."""
    relative = os.path.relpath(path)
    if relative.startswith(".."):
        return outside or str(path)
    return relative
