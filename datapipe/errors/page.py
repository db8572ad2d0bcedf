"""The traceback page stored with an error row: Django's technical 500 page, made safe.

Stored pages are read by any staff user allowed to view error rows, long after the
failure, so they differ from Django's debug page in three ways:

* no settings section (Django's page dumps every setting);
* credentials cleansed wherever they appear: local variables whose names look
  sensitive (as Django cleanses settings), and inside every text of the page
  (messages, locals' values, source lines, chained exceptions) as
  :func:`~datapipe.errors.text.hide_credentials` finds them;
* bounded: the message shown is the stored one (``DATAPIPE["ERROR_MESSAGE_MAX"]``), the
  page is cut at ``DATAPIPE["TRACEBACK_PAGE_MAX"]``; and an exception whose ``__str__``
  raises, or a local whose ``__repr__`` raises, still leaves a page.
"""

from __future__ import annotations

import re

from django.views.debug import ExceptionReporter, get_default_exception_reporter_filter

from .. import conf
from .text import hide_credentials, readable, storable

__all__ = ["render_page"]

# The settings section that Django's template still prints (empty) without settings.
_SETTINGS_SECTION = re.compile(r'<h3 id="settings-info">.*?</table>', re.S)


def render_page(exc: BaseException, message: str) -> str:
    """The stored page of ``exc``, showing ``message`` (its stored message) as its value.

    A chained cause whose own code raises (Django compares and prints causes) leaves
    the page without the causes; a page that still cannot be rendered, a note saying so:
    the row matters more than its page.
    """
    for chained in (True, False):
        try:
            shown = _Shown(exc, message, chained)
            reporter = _PageReporter(None, type(exc), shown, exc.__traceback__)
            reporter.filter = _locals_cleansing_filter()
            page = _SETTINGS_SECTION.sub("", reporter.get_traceback_html())
            return storable(page, conf.get("TRACEBACK_PAGE_MAX"))
        except Exception as render_exc:
            failure = type(render_exc).__name__
    return f"<p>The traceback page could not be rendered: {failure}.</p>"


class _Shown(Exception):
    """Stands in for the exception in the page: its stored message, its traceback, its
    notes and (when ``chained``) its causes; nothing of the object's own code runs."""

    def __init__(self, exc: BaseException, message: str, chained: bool):
        super().__init__(message)
        if chained:
            self.__cause__ = exc.__cause__
            self.__context__ = exc.__context__
            self.__suppress_context__ = exc.__suppress_context__
        self.__traceback__ = exc.__traceback__
        self.__notes__ = _notes_of(exc)

    def __str__(self):
        return self.args[0]


def _notes_of(exc: BaseException) -> list[str]:
    """The notes added to ``exc`` (``add_note``), as text."""
    try:
        return [str(note) for note in getattr(exc, "__notes__", None) or ()]
    except Exception:
        return ["<notes could not be read>"]


class _PageReporter(ExceptionReporter):
    """Django's reporter without the settings, every text of the page cleansed."""

    def get_traceback_data(self):
        data = super().get_traceback_data()
        data.pop("settings", None)
        return _cleansed(data)


def _cleansed(value):
    """``value`` (the page's template context) with credentials hidden in every text;
    exceptions (chained causes) become their text, read safely."""
    if isinstance(value, str):
        return hide_credentials(value)
    if isinstance(value, BaseException):
        return hide_credentials(readable(lambda: str(value), "message"))
    if isinstance(value, dict):
        return {key: _cleansed(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        items = [_cleansed(item) for item in value]
        return items if isinstance(value, list) else tuple(items)
    return value


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
