"""System checks: every name in depends and triggers is a registered pipeline; every
pipeline's ``fetch`` overrides and ``concurrency`` can run; every key of
``settings.DATAPIPE`` is one datapipe reads; a Celery broker is not paired with SQLite.

======================  =========================================================
id                      what
======================  =========================================================
``datapipe.E001``       depends/triggers name a pipeline that is not registered
``datapipe.E002``       a pipeline's ``fetch`` or ``concurrency`` cannot run
``datapipe.E003``       ``settings.DATAPIPE`` is not a dict
``datapipe.W001``       a key of ``settings.DATAPIPE`` that datapipe does not read
``datapipe.W002``       SQLite as the database with a Celery broker configured
======================  =========================================================
"""

import difflib

from django.conf import settings
from django.core import checks
from django.db import DEFAULT_DB_ALIAS

from . import conf
from .exceptions import PipelineDefinitionError
from .options import positive_int
from .registry import registry


@checks.register()
def check_pipeline_names(app_configs=None, **kwargs):
    """Report depends/triggers that name no registered pipeline."""
    problems = []
    for name, following in registry.edges().items():
        for other in [name, *following]:
            if other not in registry:
                problems.append(
                    checks.Error(
                        f"Pipeline graph names {other!r}, which is not registered "
                        f"(seen from {name!r}).",
                        hint="Check the spelling in depends=/trigger=, or that its pipes "
                        "module is in an installed app.",
                        id="datapipe.E001",
                    )
                )
    return problems


@checks.register()
def check_fetch(app_configs=None, **kwargs):
    """Report pipelines whose runs would refuse to start: ``fetch`` overrides mixing
    ``async def`` and ``def``, a ``concurrency`` that is not a positive integer."""
    problems = []
    for name in registry.names():
        cls = registry.get(name)
        try:
            cls.fetch_kind()
            positive_int(f"{cls.__qualname__}.concurrency", cls.concurrency)
        except (PipelineDefinitionError, TypeError, ValueError) as exc:
            problems.append(checks.Error(f"Pipeline {name!r}: {exc}", id="datapipe.E002"))
    return problems


@checks.register()
def check_settings(app_configs=None, **kwargs):
    """Report keys of ``settings.DATAPIPE`` that datapipe does not read (a misspelt key
    would otherwise be ignored silently), naming the close match."""
    value = getattr(settings, "DATAPIPE", {})
    if not isinstance(value, dict):
        return [checks.Error(f"settings.DATAPIPE must be a dict, not {type(value).__name__}.",
                             id="datapipe.E003")]
    problems = []
    for key in value:
        if key in conf.DEFAULTS:
            continue
        close = difflib.get_close_matches(str(key), conf.DEFAULTS, n=1, cutoff=0.6)
        hint = (f"Did you mean {close[0]!r}?" if close else
                "The keys datapipe reads: " + ", ".join(sorted(conf.DEFAULTS)) + ".")
        problems.append(checks.Warning(f"settings.DATAPIPE has the key {key!r}, which "
                                       "datapipe does not read: it has no effect.",
                                       hint=hint, id="datapipe.W001"))
    return problems


@checks.register()
def check_sqlite_with_broker(app_configs=None, **kwargs):
    """Report SQLite as the default database while a Celery broker is configured: the
    workers write into the same file as the callers, one writer at a time (an in-memory
    database they cannot see at all)."""
    broker = getattr(settings, "CELERY_BROKER_URL", None) or getattr(settings, "BROKER_URL",
                                                                     None)
    database = settings.DATABASES.get(DEFAULT_DB_ALIAS, {})
    if not broker or "sqlite" not in database.get("ENGINE", ""):
        return []
    name = str(database.get("NAME", ""))
    memory = name in ("", ":memory:") or "mode=memory" in name
    return [checks.Warning(
        "SQLite is the default database and a Celery broker is configured (CELERY_BROKER_URL): "
        + ("workers cannot see an in-memory database." if memory else
           "workers and callers take turns to write, and a long run holds the workers back "
           "(\"database is locked\")."),
        hint="Use PostgreSQL for distributed runs; SQLite suits local runs.",
        id="datapipe.W002",
    )]
