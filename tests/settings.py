"""Settings of the test project.

``DATABASE_URL`` selects the database (``postgres://...`` for PostgreSQL); without it
the suite runs on SQLite. ``CELERY_BROKER_URL`` names the Redis broker of the Celery
tests, which skip without it (and fail under ``CI=true``).
"""

import json
import os
import tempfile
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = "datapipe-tests-only"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ALLOWED_HOSTS = ["*"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or "sqlite:///" + str(BASE_DIR / "test-db.sqlite3"),
        conn_max_age=0,
    )
}
# On SQLite the test database is a file, never Django's default in-memory one: the live
# server answers the admin's chart images on several threads at once, and threads of a
# shared-cache in-memory database lock each other's tables (seen: requests hung for
# minutes). A file database takes SQLite's ordinary locks, as a project's would.
_test_name = os.environ.get("DATAPIPE_TEST_DB_NAME")
if not _test_name and DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    _test_name = os.path.join(tempfile.gettempdir(), f"datapipe-test-{os.getpid()}.sqlite3")
DATABASES["default"]["TEST"] = {"NAME": _test_name or None}

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "datapipe",
    "tests.testapp",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

ROOT_URLCONF = "tests.urls"
STATIC_URL = "/static/"

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

CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "")
# The suite runs Celery workers on its SQLite file on purpose (one writer at a time).
SILENCED_SYSTEM_CHECKS = ["datapipe.W002"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]

# Workers of the fault tests get shorter STALE_AFTER / SWEEP_EVERY through this variable.
DATAPIPE = {"PROGRESS": False, **json.loads(os.environ.get("DATAPIPE_TEST_SETTINGS") or "{}")}
