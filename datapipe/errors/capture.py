"""Capturing a failure while its traceback is alive: message, args, frames, signature.

What a :class:`~datapipe.models.PipelineError` row holds is computed here, from the
exception and the item, as storable text (:mod:`datapipe.errors.text`); the page is
:mod:`datapipe.errors.page`'s; :mod:`datapipe.errors.store` writes the rows.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import subprocess
import traceback
from pathlib import Path
from typing import Any

from django.conf import settings
from django.utils import timezone

from .. import conf
from ..identity import identity, json_value
from .text import cut, readable, storable, storable_json

__all__ = ["CapturedError", "args_of", "capture", "code_revision", "message_of"]


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


#: Characters kept of an item's repr and of each frame's file, function and code line.
REPR_MAX = 1000

#: Characters kept of an exception type's name (the column's length).
TYPE_MAX = 255


def frames_of(exc: BaseException) -> list[dict]:
    """The stack of ``exc`` as JSON frames: file, line, function, code (storable)."""
    return [
        {"file": storable(_relative(f.filename), REPR_MAX), "line": f.lineno,
         "function": storable(f.name, REPR_MAX), "code": storable(f.line or "", REPR_MAX)}
        for f in traceback.extract_tb(exc.__traceback__)
    ]


def signature_of(error_type: str, frames: list[dict]) -> str:
    """A hash grouping the same failure: exception type and where it passed (not lines)."""
    digest = hashlib.sha1(error_type.encode())
    for frame in frames:
        digest.update(f"|{frame['file']}:{frame['function']}:{frame['code']}".encode())
    return digest.hexdigest()


def message_of(exc: BaseException) -> str:
    """The message of ``exc`` as stored: ``str(exc)`` (a placeholder when it raises),
    cleansed, escaped, cut at ``DATAPIPE["ERROR_MESSAGE_MAX"]``."""
    return storable(readable(lambda: str(exc), "message"), conf.get("ERROR_MESSAGE_MAX"))


def args_of(exc: BaseException) -> list:
    """The args of ``exc`` as stored: JSON values kept, others as their repr; storable.

    Longer than ``DATAPIPE["ERROR_ARGS_MAX"]`` as JSON, they are cut: a single string
    argument itself, any other args as one string, their JSON text.
    """
    try:
        args = storable_json([_json_or_repr(arg) for arg in exc.args])
    except Exception:  # an ``args`` property that raises, or args that do not iterate
        args = [readable(lambda: repr(exc.args), "args")]
    limit = conf.get("ERROR_ARGS_MAX")
    text = json.dumps(args, ensure_ascii=False)
    if len(text) > limit:
        single = len(args) == 1 and isinstance(args[0], str)
        args = [cut(args[0] if single else text, limit)]
    return args


def _json_or_repr(arg: Any) -> Any:
    try:
        value = json_value(arg)  # the copy is stored: plain JSON whatever ``arg`` is
        if value == arg:
            return value
    except Exception:  # an __eq__ that raises
        pass
    return readable(lambda: repr(arg), "repr")


def error_type_of(exc: BaseException) -> str:
    """The exception's class as ``module.QualName`` (builtins without module)."""
    cls = type(exc)
    name = readable(lambda: f"{cls.__module__}.{cls.__qualname__}", "type")
    return storable(name.removeprefix("builtins."), TYPE_MAX)


class CapturedError:
    """An exception on one item, captured with everything its row needs (storable)."""

    __slots__ = (
        "pipeline_name", "item", "content_type_id", "item_id", "item_value", "item_key",
        "item_repr", "error_type", "error_message", "error_args", "frames", "signature",
        "traceback_html", "exception", "seen_at", "attempts",
    )

    def __repr__(self):
        return f"<CapturedError {self.error_type} on {self.item_repr[:60]}>"


def capture(pipeline_name: str, item: Any, exc: BaseException,
            using: str = "default") -> CapturedError:
    """Capture ``exc`` raised while processing ``item`` (without its rendered page).

    Every text is made storable (:mod:`datapipe.errors.text`); an exception or item
    whose ``__str__``/``__repr__`` raises leaves a placeholder.
    """
    error = CapturedError()
    error.attempts = 1  # tries this failure stands for (Pipe.retry: all of them)
    error.pipeline_name = pipeline_name
    error.item = item
    error.exception = exc
    error.content_type_id, error.item_id, error.item_key = identity(item, using)
    # The value is the item that reprocessing runs again: escaped, not cleansed (a keyed
    # record's fields; its key is the row's item_id).
    error.item_value = (None if error.content_type_id is not None
                        else storable_json(json_value(item), cleanse=False))
    error.item_repr = storable(readable(lambda: repr(item), "repr"), REPR_MAX)
    error.error_type = error_type_of(exc)
    error.error_message = message_of(exc)
    error.error_args = args_of(exc)
    error.frames = frames_of(exc)
    error.signature = signature_of(error.error_type, error.frames)
    error.traceback_html = ""
    error.seen_at = timezone.now()
    return error
