"""Text that every database stores and any staff user may read: escaped, bounded, cleansed.

Everything an error row holds goes through :func:`storable` (strings) or
:func:`storable_json` (JSON values: strings inside them and dict keys too):

* **escaped, not dropped**: NUL (refused by PostgreSQL in text and jsonb) and lone
  surrogates (refused by every database's encoder; ``surrogateescape`` decoding makes
  them) become the visible escapes ``\\x00`` and ``\\udce9``; non-finite floats (refused
  by jsonb) become ``"nan"``, ``"inf"``, ``"-inf"``;
* **bounded**: cut to a limit, with a note saying how long the text was;
* **cleansed** (unless ``cleanse=False``): credentials inside values, as
  :func:`hide_credentials` finds them, are replaced by Django's ``cleansed_substitute``.

The item's JSON value is stored escaped but not cleansed: it is the item that
reprocessing runs again, and a URL whose token were replaced would run differently.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

from django.views.debug import SafeExceptionReporterFilter

__all__ = ["cut", "escape", "hide_credentials", "readable", "storable", "storable_json"]

#: What a credential is replaced by (Django's own substitute, as in its pages).
SUBSTITUTE = SafeExceptionReporterFilter.cleansed_substitute

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")

# Each pattern starts at a literal (``://``, a name): no search per word boundary, so a
# megabyte of text is cleansed in linear time. The part named ``keep`` stays. Values stop
# at ``<`` and ``&`` too, so that a second pass over a rendered page keeps its markup.
_SECRET_NAME = r"(?:password|passwd|pwd|secret|token|api_?key|access_?key)"
_CREDENTIALS = [
    # scheme://user:password@host keeps its user; scheme://key@host (a Sentry DSN) hides
    # the key; scheme and host stay.
    re.compile(r"(?P<keep>://(?:[^\s:/@'\"<>]*:)?)[^\s:/@'\"<>]+(?P<end>@)"),
    # Authorization (and Proxy-Authorization) header values, as a line or in a repr.
    re.compile(r"(?P<keep>authorization['\"]?\s*[:=]\s*['\"]?)[^'\"\r\n<&]+(?P<end>)", re.I),
    # name=value (DSNs, query strings), auth_token= and db_password= included.
    re.compile(rf"(?P<keep>{_SECRET_NAME}\s*=\s*['\"]?)[^\s'\"&,;)<]+(?P<end>)", re.I),
    # "name": "value" (reprs of dicts, JSON).
    re.compile(rf"(?P<keep>{_SECRET_NAME}['\"]\s*:\s*['\"])[^'\"]*(?P<end>)", re.I),
]

# What every credential above contains, in lower case.
_CREDENTIAL_HINT = re.compile("://|authorization|pass|pwd|secret|token|key")


def escape(text: str) -> str:
    """``text`` with NUL and lone surrogates written as ``\\x00``, ``\\udce9``."""
    if _UNSTORABLE.search(text) is None:
        return text
    return _UNSTORABLE.sub(
        lambda match: "\\x00" if match[0] == "\x00" else f"\\u{ord(match[0]):04x}", text
    )


def cut(text: str, limit: int | None) -> str:
    """``text`` cut to ``limit`` characters, with a note of its length (None: no limit)."""
    if limit is None or len(text) <= limit:
        return text
    return f"{text[:limit]}… [cut at {limit} of {len(text)} characters]"


def hide_credentials(text: str) -> str:
    """``text`` with credentials replaced: passwords of URLs (``scheme://user:***@host``)
    and keys of DSNs (``https://***@host``), ``Authorization`` header values,
    ``password=``, ``token=``, ``secret=``, ``api_key=`` values (DSNs, query strings) and
    ``"password": "..."`` pairs."""
    if _CREDENTIAL_HINT.search(text.lower()) is None:
        return text  # most texts: one search instead of four
    for pattern in _CREDENTIALS:
        text = pattern.sub(rf"\g<keep>{SUBSTITUTE}\g<end>", text)
    return text


def storable(text: str, limit: int | None = None, *, cleanse: bool = True) -> str:
    """``text`` as an error row stores it: cleansed, escaped, cut to ``limit``."""
    return cut(escape(hide_credentials(text) if cleanse else text), limit)


def storable_json(value: Any, *, cleanse: bool = True) -> Any:
    """A JSON value (as ``json.loads`` returns it) made storable: every string and dict
    key through :func:`storable`, non-finite floats as their text. Not bounded."""
    if isinstance(value, str):
        return storable(value, cleanse=cleanse)
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, dict):
        return {storable(str(key), cleanse=cleanse): storable_json(item, cleanse=cleanse)
                for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [storable_json(item, cleanse=cleanse) for item in value]
    return value


def readable(read: Callable[[], str], what: str) -> str:
    """``read()`` (a ``str()`` or ``repr()`` of something), or a placeholder naming
    ``what`` when it raises: objects whose ``__str__``/``__repr__`` raise still leave text."""
    try:
        text = read()
        if not isinstance(text, str):  # a __str__ returning another type raises TypeError
            raise TypeError(f"returned {type(text).__name__}")
        return text
    except Exception as exc:
        return f"<{what} could not be read: {type(exc).__name__}>"
