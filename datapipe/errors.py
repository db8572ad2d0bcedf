"""Unhandled exceptions on items, turned into :class:`~datapipe.models.PipelineError` rows.

A failure is captured while its traceback is alive (frames, signature, the rendered
page with sensitive variables cleansed) and written after the run's transaction ends,
so that rows survive the rollback of the run that produced them. The same item failing
again updates its open row (attempts + 1) instead of adding one.
"""

from __future__ import annotations

import functools
import hashlib
import os
import subprocess
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.views.debug import ExceptionReporter, get_default_exception_reporter_filter

from . import conf
from .sources import json_value, model_key, value_key

__all__ = [
    "CapturedError", "ErrorCollector", "capture", "code_revision", "item_key", "ErrorResolver",
]


@functools.cache
def project_root() -> str:
    """The folder error frames are made relative to."""
    root = conf.get("PROJECT_ROOT") or getattr(settings, "BASE_DIR", None) or os.getcwd()
    return str(Path(root).resolve())


@functools.cache
def _git_revision(root: str) -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def code_revision() -> str:
    """The code revision: ``DATAPIPE["REVISION"]``, else the git HEAD of the project."""
    return conf.get("REVISION") or _git_revision(project_root())


def _relative(filename: str) -> str:
    root = project_root()
    if filename.startswith(root + os.sep):
        return filename[len(root) + 1 :]
    marker = os.sep + "site-packages" + os.sep
    if marker in filename:
        return filename.split(marker, 1)[1]
    return filename


def frames_of(exc: BaseException) -> list[dict]:
    """The stack of ``exc`` as JSON frames: file, line, function, code."""
    return [
        {"file": _relative(f.filename), "line": f.lineno, "function": f.name, "code": f.line or ""}
        for f in traceback.extract_tb(exc.__traceback__)
    ]


def signature_of(error_type: str, frames: list[dict]) -> str:
    """A hash grouping the same failure: exception type and where it passed (not lines)."""
    digest = hashlib.sha1(error_type.encode())
    for frame in frames:
        digest.update(f"|{frame['file']}:{frame['function']}:{frame['code']}".encode())
    return digest.hexdigest()


def _safe_args(exc: BaseException) -> list:
    return [arg if json_value(arg) == arg else repr(arg) for arg in exc.args]


class CapturedError:
    """An exception on one item, captured with everything its row needs."""

    __slots__ = (
        "pipeline_name", "item", "content_type_id", "item_id", "item_value", "item_key",
        "item_repr", "error_type", "error_message", "error_args", "frames", "signature",
        "traceback_html", "exception", "seen_at",
    )

    def __repr__(self):
        return f"<CapturedError {self.error_type} on {self.item_repr[:60]}>"


def capture(pipeline_name: str, item: Any, exc: BaseException) -> CapturedError:
    """Capture ``exc`` raised while processing ``item`` (without its rendered page)."""
    error = CapturedError()
    error.pipeline_name = pipeline_name
    error.item = item
    error.exception = exc
    key = model_key(item)
    if key is not None:
        error.content_type_id, error.item_id = key
        error.item_value = None
        error.item_key = _model_item_key(key)
    else:
        error.content_type_id = error.item_id = None
        error.item_value = json_value(item)
        error.item_key = value_key(item)
    try:
        error.item_repr = repr(item)[:1000]
    except Exception as repr_exc:  # a broken __repr__ must not lose the error
        error.item_repr = f"<{type(item).__name__}: repr failed: {repr_exc!r}>"
    error.error_type = f"{type(exc).__module__}.{type(exc).__qualname__}".removeprefix("builtins.")
    error.error_message = str(exc)[:10000]
    error.error_args = _safe_args(exc)
    error.frames = frames_of(exc)
    error.signature = signature_of(error.error_type, error.frames)
    error.traceback_html = ""
    error.seen_at = timezone.now()
    return error


def render_page(exc: BaseException) -> str:
    """Django's technical 500 page for ``exc``: escaped, sensitive variables cleansed."""
    reporter = ExceptionReporter(None, type(exc), exc, exc.__traceback__)
    reporter.filter = _locals_cleansing_filter()
    return reporter.get_traceback_html()


class CleansedLocalsMixin:
    """Also cleanses local variables that look sensitive, as settings are.

    Django cleanses only the locals named by ``@sensitive_variables``; a failing item's
    frames often hold a ``password`` or an ``api_key`` without that decorator, and the
    page is stored in the database. Names (and dict keys) matching the filter's
    ``hidden_settings`` are replaced by its ``cleansed_substitute``.
    """

    def get_traceback_frame_variables(self, request, tb_frame):
        variables = super().get_traceback_frame_variables(request, tb_frame)
        return [
            (name, self.cleanse_setting(name, value))
            if isinstance(value, dict) or self.hidden_settings.search(name)
            else (name, value)
            for name, value in variables
        ]


def _locals_cleansing_filter():
    """The project's exception reporter filter, extended by :class:`CleansedLocalsMixin`."""
    base = type(get_default_exception_reporter_filter())
    return type(base.__name__, (CleansedLocalsMixin, base), {})()


def _model_item_key(key: tuple[int, str]) -> str:
    return f"{key[0]}:{key[1]}"


def item_key(item: Any) -> str:
    """The identity of ``item`` in error rows: content type and pk, or a hash of its value."""
    key = model_key(item)
    return _model_item_key(key) if key is not None else value_key(item)


class ErrorResolver:
    """Resolves the open error rows of items that now succeed, one UPDATE per batch.

    Local runs, Celery chunks and reprocessing all resolve rows this way. It checks once
    per run whether the pipeline has open rows at all, and otherwise issues no query.
    The UPDATE runs in the run's transaction, so a run rolled back resolves nothing.
    """

    batch = 500

    def __init__(self, pipeline_name: str, using: str):
        from .models import PipelineError

        self.pipeline_name = pipeline_name
        self.using = using
        self.open_rows = PipelineError.objects.using(using).filter(
            pipeline_name=pipeline_name, resolved=False
        )
        self.active = self.open_rows.exists()

    def resolve(self, items) -> int:
        """Resolve the open rows of ``items`` (which succeeded or continued); return how many."""
        if not self.active:
            return 0
        keys = [item_key(item) for item in items if item is not None]
        resolved = 0
        now = timezone.now()
        for start in range(0, len(keys), self.batch):
            resolved += self.open_rows.filter(item_key__in=keys[start:start + self.batch]).update(
                resolved=True, resolved_at=now
            )
        return resolved


class ErrorCollector:
    """Captures a run's failures and writes them as rows once the transaction is over."""

    def __init__(self, pipeline_name: str, using: str):
        self.pipeline_name = pipeline_name
        self.using = using
        self.captured: list[CapturedError] = []
        self._pages = Counter()
        self._pending: list[CapturedError] = []

    def add(self, item: Any, exc: BaseException) -> CapturedError:
        """Capture a failure of ``item``."""
        limit = conf.get("TRACEBACK_PAGES_PER_SIGNATURE")
        error = capture(self.pipeline_name, item, exc)
        if self._pages[error.signature] < limit:
            self._pages[error.signature] += 1
            error.traceback_html = render_page(exc)
        self.captured.append(error)
        self._pending.append(error)
        return error

    def save(self, run=None) -> None:
        """Write the pending failures: update open rows of the same items, create others."""
        pending, self._pending = self._pending, []
        if pending:
            save_errors(pending, self.using, run)


def save_errors(errors: list[CapturedError], using: str, run=None) -> None:
    """Upsert rows for ``errors`` in bulk (one open row per pipeline and item)."""
    from .models import PipelineError

    latest: dict[tuple, CapturedError] = {}
    repeats = Counter()
    for error in errors:
        key = (error.pipeline_name, error.item_key)
        repeats[key] += 1
        latest[key] = error
    with transaction.atomic(using=using):
        rows = PipelineError.objects.using(using).select_for_update()
        open_rows = {
            (row.pipeline_name, row.item_key): row
            for row in rows.filter(
                resolved=False,
                pipeline_name__in={k[0] for k in latest},
                item_key__in=[k[1] for k in latest],
            )
        }
        updated, created = [], []
        revision = code_revision()
        for key, error in latest.items():
            row = open_rows.get(key)
            if row is None:
                row = PipelineError(first_seen=error.seen_at, attempts=0)
                created.append(row)
            else:
                updated.append(row)
            _fill(row, error, run, revision)
            row.attempts += repeats[key]
        if updated:
            PipelineError.objects.using(using).bulk_update(updated, UPDATED_FIELDS)
        if created:
            PipelineError.objects.using(using).bulk_create(created)


UPDATED_FIELDS = [
    "item_repr", "error_type", "error_message", "error_args", "frames", "signature",
    "traceback_html", "revision", "run", "attempts", "last_seen",
]


def _fill(row, error: CapturedError, run, revision: str) -> None:
    row.pipeline_name = error.pipeline_name
    row.item_content_type_id = error.content_type_id
    row.item_id = error.item_id
    row.item_value = error.item_value
    row.item_key = error.item_key
    row.item_repr = error.item_repr
    row.error_type = error.error_type
    row.error_message = error.error_message
    row.error_args = error.error_args
    row.frames = error.frames
    row.signature = error.signature
    if error.traceback_html or not row.traceback_html:
        row.traceback_html = error.traceback_html
    row.revision = revision
    row.run = run
    row.last_seen = error.seen_at
