"""The options of a session's runs, resolved once against the ``DATAPIPE`` settings."""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass

from . import conf

__all__ = ["RunOptions", "SESSION_OPTIONS", "flag", "positive_int", "refuse_unknown"]


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

    @classmethod
    def resolve(cls, debug=None, chunksize=None, atomic=None, progress=None,
                keep_results=False, using=None, concurrency=None) -> RunOptions:
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
        return cls(
            debug=flag("debug", conf.get("DEBUG") if debug is None else debug),
            chunksize=chunksize,
            atomic=flag("atomic", conf.get("ATOMIC") if atomic is None else atomic),
            progress=flag("progress", progress),
            keep_results=flag("keep_results", keep_results),
            using=using,
            concurrency=None if concurrency is None else positive_int("concurrency", concurrency),
        )

    def for_chunks(self) -> dict:
        """The options a Celery chunk is run with (JSON), stored with its run."""
        return {name: value for name, value in asdict(self).items()
                if name in ("debug", "chunksize", "keep_results", "concurrency")}


#: The keywords of ``get_session()``: the run options and the initial context.
SESSION_OPTIONS = (*RunOptions.__dataclass_fields__, "context")
