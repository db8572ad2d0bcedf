"""Pipelines of the Celery tests, imported by the test process and by the workers."""

import asyncio
import os
import signal
import time
from datetime import timedelta

from django.db import connection, transaction

from datapipe import Pipe, Retry, pipeline
from tests.testapp.models import Note, ResultItem, SourceItem
from tests.testapp.pipes import Flow


@pipeline("dist.slow")
class Slow(Flow):
    """``flow``, sleeping ``context.sleep`` seconds per item (so workers die mid-chunk)."""

    def process(self):
        time.sleep(self.context.get("sleep", 0))
        return super().process()


@pipeline("dist.crash")
class Crash(Flow):
    """``flow``, except that an item whose behaviour is ``crash`` kills its worker process."""

    def process(self):
        if self.item.behaviour == "crash":
            os.kill(os.getpid(), signal.SIGKILL)
        return super().process()


@pipeline("dist.backend")
class Backend(Pipe):
    """One ResultItem per item whose number is the PostgreSQL backend that saved it."""

    def process(self):
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            pid = cursor.fetchone()[0]
        self.add_to_save(ResultItem(source=self.item, number=pid))
        return super().process()


@pipeline("dist.sum")
class Sum(Pipe):
    """Sums ``number`` into ``context.total``; ``finish_run`` saves the sum over chunks."""

    def prepare(self, items):
        self.context.total = 0
        return super().prepare(items)

    def process(self):
        self.context.total += self.item.number
        return super().process()

    def finish_run(self, run):
        totals = [chunk.context["total"] for chunk in run.chunks.all()]
        # unique_key: a second call for the same run would fail its insert
        ResultItem.objects.create(number=sum(totals), unique_key=f"sum-{run.pk}")
        super().finish_run(run)


# The lifecycle of runs, locally and in chunks (tests/test_contract.py) -------------------


@pipeline("dist.pre")
class Pre(Pipe):
    """A dependency of ``dist.chained``: processes the items, saves nothing."""


@pipeline("dist.chained")
class Chained(Flow):
    """``flow`` with a dependency (``dist.pre``) and a trigger (``dist.post``)."""

    depends = ["dist.pre"]


@pipeline("dist.post", trigger="dist.chained")
class Post(Pipe):
    """Triggered by ``dist.chained`` on its results."""


@pipeline("dist.finish_fails")
class FinishFails(Flow):
    """``flow`` whose ``finish_run`` raises."""

    def finish_run(self, run):
        super().finish_run(run)
        raise RuntimeError("finish_run broke")


@pipeline("dist.hooks")
class Hooks(Flow):
    """``flow``; each item first registers an ``on_commit`` callback that writes a row
    (``ResultItem`` with ``unique_key="hook-<pk>"``, created outside any transaction)."""

    def process(self):
        pk = self.item.pk

        def hook():
            assert not connection.in_atomic_block, "on_commit callback ran inside the run"
            ResultItem.objects.create(number=-1, unique_key=f"hook-{pk}")

        transaction.on_commit(hook)
        return super().process()


# Faults that the sweep heals (tests/test_self_healing.py) ---------------------------------


@pipeline("dist.finish_slow")
class FinishSlow(Flow):
    """``flow`` whose first ``finish_run`` of a run writes a marker, then sleeps
    ``context.finish_sleep`` seconds (a worker is killed meanwhile); later calls count
    themselves in the marker's ``number``."""

    def finish_run(self, run):
        marker, created = ResultItem.objects.get_or_create(unique_key=f"finish-{run.pk}")
        if created:
            time.sleep(self.context.get("finish_sleep", 0))
        else:
            ResultItem.objects.filter(pk=marker.pk).update(number=marker.number + 1)
        super().finish_run(run)


@pipeline("dist.trig_source")
class TriggerSource(Flow):
    """``flow``, triggering ``dist.trig_slow`` on its results."""


@pipeline("dist.trig_slow", trigger="dist.trig_source")
class TriggerSlow(Pipe):
    """One Note per ResultItem result, ``context.trigger_sleep`` seconds each."""

    def process(self):
        result = super().process()
        time.sleep(self.context.get("trigger_sleep", 0))
        self.add_to_save(Note(result=result, text=f"from {result.pk}"))
        return result


# fetch() in chunks (tests/test_fetch.py) ---------------------------------------------------


@pipeline("dist.fetch")
class Fetching(Pipe):
    """An async ``fetch`` per item: every fetch of a chunk waits until ``context.together``
    are in flight (a barrier), then fails on ``fetch_error`` items, ignores
    ``fetch_ignore`` ones, else keeps ``number * 10`` for ``process``, which saves it. The
    chunk's context gets ``most_in_flight``."""

    def prepare(self, items):
        self.local.barrier = asyncio.Barrier(self.context["together"])
        self.local.in_flight = self.local.most = 0
        return super().prepare(items)

    async def fetch(self):
        self.local.in_flight += 1
        self.local.most = max(self.local.most, self.local.in_flight)
        try:
            await asyncio.wait_for(self.local.barrier.wait(), 30)
            if self.item.behaviour == "fetch_error":
                raise ValueError(f"fetch failed on {self.item.pk}")
            if self.item.behaviour == "fetch_ignore":
                self.ignore("fetch said so")
            self.fetched = self.item.number * 10
        finally:
            self.local.in_flight -= 1
        await super().fetch()

    def process(self):
        item = super().process()
        self.add_to_save(ResultItem(source=item, number=self.fetched))
        return item

    def finish(self, results):
        self.context.most_in_flight = self.local.most
        super().finish(results)


#: Tries seen per item pk, in this process (a chunk's retries run in one process).
TRIES: dict = {}


@pipeline("dist.flaky")
class Flaky(Pipe):
    """One ResultItem per item; an item of behaviour ``fails:N`` raises TimeoutError on
    its first N tries (``fails:99``: always), ``bug`` raises KeyError (never retried).
    Retried 3 times in all, backoff ``context.backoff`` (default 0.05 s)."""

    retry = Retry(on=(TimeoutError,), attempts=3, backoff=0.05, max_delay=1)

    def process(self):
        item = super().process()
        tries = TRIES[item.pk] = TRIES.get(item.pk, 0) + 1
        self.add_to_save(ResultItem(source=item, number=tries))
        if item.behaviour.startswith("fails:") and tries <= int(item.behaviour[6:]):
            raise TimeoutError(f"try {tries} of item {item.pk} timed out")
        if item.behaviour == "bug":
            raise KeyError("bug")
        return item


@pipeline("dist.fragile")
class Fragile(Pipe):
    """One ResultItem per item; ``error`` items raise; at most 2 errors allowed."""

    max_errors = 2

    def process(self):
        item = super().process()
        self.add_to_save(ResultItem(source=item, number=item.number))
        if item.behaviour == "error":
            raise ValueError(f"item {item.number} is bad")
        return item


@pipeline("dist.scheduled",
          schedule=timedelta(seconds=1) if os.environ.get("DATAPIPE_TEST_SCHEDULE") else None)
class Scheduled(Pipe):
    """Every second in a worker started with DATAPIPE_TEST_SCHEDULE set: one ResultItem
    per run (number: the run id), after sleeping 2.5 s, so that the next ones are skipped
    while it runs."""

    def source(self):
        return SourceItem.objects.filter(behaviour="scheduled")[:1]

    def process(self):
        item = super().process()
        time.sleep(2.5)
        self.add_to_save(ResultItem(source=item, number=self.context.get("n", 0)))
        return item
