"""Settings of the benchmarks: the test project's, plus the benchmark pipelines.

Without ``DATABASE_URL`` the benchmarks use their own SQLite file (not the suite's).
"""

import os

from tests.settings import *  # noqa: F403
from tests.settings import BASE_DIR, INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "benchmarks"]

if not os.environ.get("DATABASE_URL"):
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(BASE_DIR / "benchmarks" / "benchmarks.sqlite3"),
        }
    }
