"""Pipelines of the Celery tests, imported by the test process and by the workers."""

import os
import signal
import time

from django.db import connection

from datapipe import Pipe, pipeline
from tests.testapp.models import ResultItem
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
