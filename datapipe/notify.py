"""Mail to the site's ADMINS when a run fails, exceeds its error threshold, or meets a
new kind of failure: the events named in ``DATAPIPE["NOTIFY"]``.

Each mail (Django's ``mail_admins``) names the pipeline, the counts and an admin link
(absolute with ``DATAPIPE["ADMIN_URL"]``). A mail that cannot be sent is logged, never
raised: a run's outcome does not depend on the mail server. Runs started by other runs
(depends, triggers, the runs inside Celery chunks) are reported through their root run.
"""

from __future__ import annotations

import logging

from django.core.mail import mail_admins
from django.urls import NoReverseMatch, reverse

from . import conf
from .report import COUNTS

__all__ = ["EVENTS", "error_group_opened", "run_failed"]

logger = logging.getLogger("datapipe")

#: The events ``DATAPIPE["NOTIFY"]`` may name.
EVENTS = ("run_failed", "threshold_exceeded", "error_group_opened")


def wanted(event: str) -> bool:
    """Whether ``DATAPIPE["NOTIFY"]`` names ``event``."""
    return event in conf.get("NOTIFY")


def admin_link(viewname: str, *args) -> str:
    """The admin page ``viewname`` as an absolute URL (``DATAPIPE["ADMIN_URL"]``), or as a
    path when it is not set."""
    try:
        path = reverse(f"admin:{viewname}", args=args)
    except NoReverseMatch:
        return ""
    base = conf.get("ADMIN_URL").rstrip("/")
    if not base:
        return path
    admin_root = reverse("admin:index").rstrip("/")
    return base + path[len(admin_root):] if path.startswith(admin_root) else base + path


def run_failed(run, over_threshold: bool = False) -> None:
    """Mail about ``run`` (a root run that ended failed): ``threshold_exceeded`` when
    its error threshold stopped it (``over_threshold``), ``run_failed`` otherwise (or
    when only that one is chosen)."""
    if run.parent_id is not None:
        return
    over = over_threshold and wanted("threshold_exceeded")
    event = "threshold_exceeded" if over else "run_failed"
    if not wanted(event):
        return
    what = "error threshold exceeded" if event == "threshold_exceeded" else "run failed"
    counts = ", ".join(f"{getattr(run, name)} {name}" for name in COUNTS)
    kind = "distributed" if run.distributed else "local"
    _send(
        f"{what}: {run.pipeline_name} (run {run.pk})",
        f"Pipeline: {run.pipeline_name}\nRun: {run.pk} ({kind})\n"
        f"Status: {run.status}\nCounts: {counts}\nWhy: {run.message}\n"
        f"Run: {admin_link('datapipe_pipelinerun_change', run.pk)}\n",
    )


def error_group_opened(error) -> None:
    """Mail about ``error``, the first open row of a new kind of failure."""
    if not wanted("error_group_opened"):
        return
    link = admin_link("datapipe_pipelineerror_changelist")
    _send(
        f"new failure in {error.pipeline_name}: {error.error_type}",
        f"Pipeline: {error.pipeline_name}\nFailure: {error.error_type}: "
        f"{error.error_message[:500]}\nItem: {error.item_repr[:200]}\n"
        f"Attempts: {error.attempts}\nSignature: {error.signature}\n"
        f"Errors: {link}?signature={error.signature}\n",
    )


def _send(subject: str, body: str) -> None:
    try:
        mail_admins(f"[datapipe] {subject}", body)
    except Exception:
        logger.exception("Could not mail the admins about: %s", subject)
