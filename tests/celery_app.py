"""The Celery app of the test project, for the workers started by ``tests/workers.py``.

Short visibility timeout: a message taken by a worker that was killed comes back
within seconds, so the tests of killed workers stay quick.
"""

import os

from celery import Celery

import datapipe.celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

#: Seconds before a message taken by a dead worker is delivered again.
VISIBILITY_TIMEOUT = 6

app = Celery("tests")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.update(
    broker_transport_options={
        "visibility_timeout": VISIBILITY_TIMEOUT,
        # look for such messages every second (the default is every 100 s)
        "unacked_restore_interval": 1,
        "unacked_restore_throttle": 1,
    },
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    imports=[
        "datapipe.tasks", "tests.distributed_pipes", "tests.io_pipes", "tests.testapp.update_pipes",
    ],
)
# A worker started with beat (-B) sends the sweep and the scheduled runs to its own queue.
datapipe.celery.configure(app, sweep_queue=os.environ.get("DATAPIPE_TEST_SWEEP_QUEUE"),
                          schedule_queue=os.environ.get("DATAPIPE_TEST_SWEEP_QUEUE"))
app.set_default()
