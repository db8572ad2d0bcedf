"""The demo's Celery app: ``celery --workdir demo -A demoproject worker``.

Settings come from Django's, prefixed ``CELERY_`` (see settings.py); tasks are found in
the installed apps, datapipe's ``datapipe.run`` among them. ``datapipe.celery.configure``
keeps the workers' database connections open across tasks.
"""

import os

from celery import Celery

import datapipe.celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demoproject.settings")

app = Celery("demoproject")
app.config_from_object("django.conf:settings", namespace="CELERY")
datapipe.celery.configure(app)
app.autodiscover_tasks()
