"""The Celery app of the benchmark's workers and of the process that dispatches to them."""

import os

from celery import Celery

import datapipe.celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")

#: The queue the benchmark's workers consume.
QUEUE = "datapipe-benchmarks"

app = Celery("benchmarks")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.update(
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    imports=["datapipe.tasks"],
)
datapipe.celery.configure(app)
app.set_default()
