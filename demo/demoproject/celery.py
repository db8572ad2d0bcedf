"""The demo's Celery app: ``celery --workdir demo -A demoproject worker``.

Settings come from Django's, prefixed ``CELERY_`` (see settings.py); tasks are found in
the installed apps, datapipe's ``datapipe.run`` among them.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demoproject.settings")

app = Celery("demoproject")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
