"""Settings of the benchmarks: the test project's, plus the benchmark pipelines.

Without ``DATABASE_URL`` the benchmarks use their own SQLite file (not the suite's).
"""

import os

from tests.settings import *  # noqa: F403
from tests.settings import BASE_DIR, DATABASES, INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "benchmarks"]

if not os.environ.get("DATABASE_URL"):
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(BASE_DIR / "benchmarks" / "benchmarks.sqlite3"),
        }
    }

# Workers keep their database connection across tasks (chunks), as a Celery deployment
# should: CONN_MAX_AGE = 0 would connect again for every chunk.
DATABASES["default"]["CONN_MAX_AGE"] = 600
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
