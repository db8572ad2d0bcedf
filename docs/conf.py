"""Sphinx configuration of datapipe's documentation.

Build it with ``sphinx-build -W --keep-going docs docs/_build/html`` (``pip install
"datapipe[docs]"``); the test suite builds it the same way (tests/test_docs.py). Django
is set up with a minimal in-memory project so that autodoc can import every module.
"""

import sys
from pathlib import Path

import django
from django.conf import settings

DOCS = Path(__file__).resolve().parent
sys.path[:0] = [str(DOCS.parent), str(DOCS / "_ext")]

if not settings.configured:
    settings.configure(
        INSTALLED_APPS=[
            "django.contrib.admin",
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
            "django.contrib.messages",
            "datapipe",
        ],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        SECRET_KEY="datapipe-docs",
        USE_TZ=True,
    )
    django.setup()

import datapipe  # noqa: E402  (after Django's set-up)

project = "datapipe"
author = "the datapipe authors"
copyright = "the datapipe authors"
version = release = datapipe.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
    "datapipe_settings",
]
exclude_patterns = ["_build"]
html_theme = "furo"
html_title = f"datapipe {release}"

autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "undoc-members": False}
autodoc_typehints = "description"
suppress_warnings = ["ref.python"]  # a name that several modules re-export
