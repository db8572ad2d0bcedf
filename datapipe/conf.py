"""The settings of datapipe, read lazily from the ``DATAPIPE`` dict of Django settings.

Every read goes through :func:`get`, so ``override_settings(DATAPIPE={...})`` works.
Each default is documented where it is defined.
"""

from django.conf import settings

DEFAULTS = {
    # Re-raise unhandled exceptions (rolling the run back) instead of collecting them.
    "DEBUG": False,
    # Items per keyset page and per flush; also the bulk-insert batch size.
    "CHUNKSIZE": 2000,
    # Run the whole run in one transaction; False commits after every flush.
    "ATOMIC": True,
    # Progress bar on stderr: None means "when stderr is a terminal".
    "PROGRESS": None,
    # Rendered traceback pages stored per failure signature and run; later rows of the
    # same signature keep their frames but point at the group's page.
    "TRACEBACK_PAGES_PER_SIGNATURE": 10,
    # Characters of an exception's message stored on its error row (and shown in its
    # page); a longer message is cut, with a note of its length.
    "ERROR_MESSAGE_MAX": 10_000,
    # Characters of an exception's args stored on its error row, as JSON; longer args
    # are cut: a single string argument itself, others as one string of their JSON.
    "ERROR_ARGS_MAX": 10_000,
    # Characters of a stored traceback page; a longer page is cut, with a note. A page
    # of a few frames takes 15-40 kB, each further frame about 2 kB and its locals.
    "TRACEBACK_PAGE_MAX": 300_000,
    # Code revision stored on error rows; None reads ``git rev-parse HEAD`` once.
    "REVISION": None,
    # Folder that error frames are made relative to; None uses settings.BASE_DIR or cwd.
    "PROJECT_ROOT": None,
    # Module name searched in every installed app for pipelines.
    "PIPES_MODULE": "pipes",
    # Celery: deliveries of a chunk that never finished (its worker died) tolerated
    # before its items are recorded as errors instead of being delivered again.
    "CELERY_MAX_REDELIVERIES": 3,
    # Seconds without a chunk sent, finished or a heartbeat of its worker after which a
    # running distributed run is stale: the sweep sends its lost chunks again, and
    # claims again a finish_run whose worker died. Workers beat every fifth of it.
    "STALE_AFTER": 300,
    # Seconds between two sweeps (task datapipe.sweep) in the beat schedule that
    # datapipe.celery.configure(app) sets up.
    "SWEEP_EVERY": 60,
    # Events mailed to the ADMINS with Django's ``mail_admins``: any of ``"run_failed"``,
    # ``"threshold_exceeded"``, ``"error_group_opened"`` (see datapipe.notify).
    "NOTIFY": [],
    # The absolute URL of the admin (``"https://ops.example.com/admin/"``), for the
    # links in those mails; empty: links are paths on the site.
    "ADMIN_URL": "",
    # Seconds a scheduled run's lease lasts unless renewed: a worker that died
    # holding it frees it after this (see datapipe.schedules).
    "SCHEDULE_LEASE": 120,
}


def get(name):
    """Return the setting ``name`` of ``settings.DATAPIPE``, or its default."""
    if name not in DEFAULTS:
        raise KeyError(f"Unknown datapipe setting {name!r}")
    return getattr(settings, "DATAPIPE", {}).get(name, DEFAULTS[name])
