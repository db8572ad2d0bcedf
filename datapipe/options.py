"""The options of a session's runs, resolved once against the ``DATAPIPE`` settings."""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass

from . import conf

__all__ = ["RunOptions"]


def _flag(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, not {value!r}")
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

    @classmethod
    def resolve(cls, debug=None, chunksize=None, atomic=None, progress=None,
                keep_results=False, using=None) -> RunOptions:
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
            debug=_flag("debug", conf.get("DEBUG") if debug is None else debug),
            chunksize=chunksize,
            atomic=_flag("atomic", conf.get("ATOMIC") if atomic is None else atomic),
            progress=_flag("progress", progress),
            keep_results=_flag("keep_results", keep_results),
            using=using,
        )

    def for_chunks(self) -> dict:
        """The options a Celery chunk is run with (JSON), stored with its run."""
        return {name: value for name, value in asdict(self).items()
                if name in ("debug", "chunksize", "keep_results")}
