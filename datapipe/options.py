"""The options of a session's runs, resolved once against the ``DATAPIPE`` settings."""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass

from . import conf
from .retry import Retry

__all__ = [
    "RUN_KEYWORDS", "RunOptions", "SELECT", "SESSION_OPTIONS", "flag", "positive_int",
    "refuse_unknown",
]

#: What ``run(select=...)`` accepts: every item, items never processed, items failing.
SELECT = ("all", "new", "failed")


def refuse_unknown(where: str, given, accepted) -> None:
    """Raise :class:`TypeError` naming the keywords of ``given`` that are not
    ``accepted``, and the accepted ones (a typo is refused, never ignored)."""
    unknown = sorted(set(given) - set(accepted))
    if unknown:
        raise TypeError(f"{where} got unknown keyword{'s' if len(unknown) > 1 else ''} "
                        f"{', '.join(unknown)}; accepted: {', '.join(sorted(accepted))}")


def flag(name: str, value) -> bool:
    """``value`` if it is a boolean; else :class:`TypeError` naming the flag ``name``
    (``"false"`` is not False)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, not {value!r}")
    return value


def positive_int(name: str, value) -> int:
    """``value`` if it is a positive int; else :class:`TypeError` (not an int) or
    :class:`ValueError` (zero or negative) naming ``name``."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be a positive integer, not {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be a positive integer, not {value!r}")
    return value


@dataclass(frozen=True)
class RunOptions:
    """Options of a session (see :class:`datapipe.Session`), validated."""

    debug: bool = False
    chunksize: int = 2000
    atomic: bool = True
    progress: bool = False
    keep_results: bool = False
    using: str | None = None
    concurrency: int | None = None  # None: each pipe's ``concurrency`` attribute
    # None: each pipe's attribute of the same name.
    retry: Retry | None = None
    max_errors: int | None = None
    max_error_rate: float | None = None
    # Keywords of one run (run()), not of a session.
    select: str = "all"
    dry_run: bool = False
    prune: bool = False

    @classmethod
    def resolve(cls, debug=None, chunksize=None, atomic=None, progress=None,
                keep_results=False, using=None, concurrency=None, retry=None,
                max_errors=None, max_error_rate=None, select="all", dry_run=False,
                prune=False) -> RunOptions:
        """Options with None replaced by the ``DATAPIPE`` settings; validated."""
        chunksize = conf.get("CHUNKSIZE") if chunksize is None else chunksize
        if not isinstance(chunksize, int) or isinstance(chunksize, bool) or chunksize < 1:
            raise ValueError(f"chunksize must be a positive integer, not {chunksize!r}")
        if progress is None:
            progress = conf.get("PROGRESS")
        if progress is None:
            progress = sys.stderr.isatty()
        if using is not None and not isinstance(using, str):
            raise TypeError(f"using must be a database alias, not {using!r}")
        if prune is True and select != "all":
            raise ValueError(f"prune=True is a full refresh: it needs every item (select="
                             f"'all'), not select={select!r}, or it would delete the outputs "
                             "of the items left out")
        return cls(
            debug=flag("debug", conf.get("DEBUG") if debug is None else debug),
            chunksize=chunksize,
            atomic=flag("atomic", conf.get("ATOMIC") if atomic is None else atomic),
            progress=flag("progress", progress),
            keep_results=flag("keep_results", keep_results),
            using=using,
            concurrency=None if concurrency is None else positive_int("concurrency", concurrency),
            retry=check_retry(retry),
            max_errors=check_max_errors(max_errors),
            max_error_rate=check_max_error_rate(max_error_rate),
            select=check_select(select),
            dry_run=flag("dry_run", dry_run),
            prune=flag("prune", prune),
        )

    def for_run(self, **keywords) -> RunOptions:
        """These options with a run's own keywords (:data:`RUN_KEYWORDS`), validated."""
        refuse_unknown("run()", keywords, RUN_KEYWORDS)
        values = {name: getattr(self, name) for name in self.__dataclass_fields__}
        return type(self).resolve(**{**values, **keywords})

    def for_chunks(self) -> dict:
        """The options a Celery chunk is run with (JSON), stored with its run."""
        sent = {name: value for name, value in asdict(self).items()
                if name in ("debug", "chunksize", "keep_results", "concurrency", "max_errors",
                            "max_error_rate", "prune")}
        if self.retry is not None:
            sent["retry"] = self.retry.as_json()
        return sent

    @classmethod
    def from_chunk(cls, sent: dict, **overrides) -> RunOptions:
        """The options :meth:`for_chunks` stored, for a worker."""
        sent = dict(sent)
        if sent.get("retry") is not None:
            sent["retry"] = Retry.from_json(sent["retry"])
        return cls.resolve(**{**sent, **overrides})


def check_retry(value):
    """``value`` if it is None or a :class:`~datapipe.retry.Retry`; else TypeError."""
    if value is not None and not isinstance(value, Retry):
        raise TypeError(f"retry must be a datapipe.Retry(...), not {value!r}")
    return value


def check_max_errors(value):
    """None, or a number of errors (0 or more) after which a run stops."""
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
        raise ValueError(f"max_errors must be an integer >= 0 (or None), not {value!r}")
    return value


def check_max_error_rate(value):
    """None, or a fraction of failed items (0 to 1) above which a run stops."""
    if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool)
                              or not 0 <= value <= 1):
        raise ValueError(f"max_error_rate must be a fraction between 0 and 1 (0.05 for 5%), "
                         f"or None, not {value!r}")
    return value


def check_select(value):
    """One of :data:`SELECT`."""
    if value not in SELECT:
        raise ValueError(f"select must be one of {', '.join(map(repr, SELECT))}, not {value!r}")
    return value


#: The keywords of one ``run()`` (not of a session).
RUN_KEYWORDS = ("select", "dry_run", "prune")

#: The keywords of ``get_session()``: the run options and the initial context.
SESSION_OPTIONS = (
    *(name for name in RunOptions.__dataclass_fields__ if name not in RUN_KEYWORDS), "context")
