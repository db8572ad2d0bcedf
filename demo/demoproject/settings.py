"""Settings of the demo project, driven by the environment.

With nothing set, the demo runs on SQLite (``demo/db.sqlite3``) with no server and
runs its pipelines in-process. ``DATABASE_URL`` (``postgres://user:pass@host/db``)
selects another database; ``CELERY_BROKER_URL`` (``redis://host:6379/0``) makes the
demo send its import to Celery workers.
"""

import os
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent  # demo/

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "demo-only-not-secret")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",")
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
        # Workers keep their connection across tasks.
        conn_max_age=int(os.environ.get("DATABASE_CONN_MAX_AGE", "60")),
    )
}

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "datapipe",
    "airports",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "demoproject.urls"
WSGI_APPLICATION = "demoproject.wsgi.application"
STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "static"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

# Celery: used only when a broker is named. JSON only; a chunk is acknowledged when it
# is done (a killed worker's chunk is delivered again), one chunk prefetched at a time.
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "")
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_WORKER_MAX_TASKS_PER_CHILD = 1000
# Longer than the longest chunk, or Redis delivers an unacknowledged chunk twice.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}

# Error frames relative to the repository (demo/airports/pipes.py, datapipe/engine.py).
DATAPIPE = {"PROGRESS": False, "PROJECT_ROOT": BASE_DIR.parent}

# The demo's stand-in for a code fix: False is the first version of the import, which
# fails on the rows whose state is "NA"; the demo turns it on before reprocessing them.
AIRPORTS_NA_IS_MISSING = os.environ.get("AIRPORTS_NA_IS_MISSING", "0") == "1"

# datapipe logs one warning per failed item; the demo prints its own account instead.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {
        "datapipe": {
            "handlers": ["console"],
            "level": os.environ.get("DATAPIPE_LOG_LEVEL", "ERROR"),
            "propagate": False,
        }
    },
}
