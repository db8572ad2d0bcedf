"""Capturing a failure while its traceback is alive: frames, signature, rendered page.

What a :class:`~datapipe.models.PipelineError` row holds is computed here, from the
exception and the item; :mod:`datapipe.errors.store` writes the rows.
"""

from __future__ import annotations

import functools
import hashlib
import os
import subprocess
import traceback
from pathlib import Path
from typing import Any

from django.conf import settings
from django.utils import timezone
from django.views.debug import ExceptionReporter, get_default_exception_reporter_filter

from .. import conf
from ..identity import identity, json_value

__all__ = ["CapturedError", "capture", "code_revision", "render_page"]


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


def capture(pipeline_name: str, item: Any, exc: BaseException,
            using: str = "default") -> CapturedError:
    """Capture ``exc`` raised while processing ``item`` (without its rendered page)."""
    error = CapturedError()
    error.pipeline_name = pipeline_name
    error.item = item
    error.exception = exc
    error.content_type_id, error.item_id, error.item_key = identity(item, using)
    error.item_value = None if error.item_id is not None else json_value(item)
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
