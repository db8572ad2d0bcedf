"""Error thresholds: ``max_errors`` / ``max_error_rate`` of a pipe or a session.

The engine judges them as items fail (a run that exceeds them stops as for
``PipeError``); a distributed run is judged over the counts of all its chunks, once more
when its last chunk is done (:func:`datapipe.distributed.ledger.finish_if_complete`).
"""

from __future__ import annotations

from dataclasses import dataclass

from .exceptions import ErrorThresholdExceeded
from .options import RunOptions, check_max_error_rate, check_max_errors

__all__ = ["RATE_JUDGED_FROM", "Thresholds"]

#: ``max_error_rate`` is judged once this many items were processed (and at the end).
RATE_JUDGED_FROM = 100


@dataclass(frozen=True)
class Thresholds:
    """How many failures a run of one pipeline accepts (None: any number)."""

    max_errors: int | None = None
    max_error_rate: float | None = None

    @classmethod
    def of(cls, pipe_class, options: RunOptions | dict | None = None) -> Thresholds:
        """The session's thresholds (``options``, or the dict a chunk was sent with),
        else the pipe's attributes; checked, naming the pipe."""
        def pick(name):
            given = (options.get(name) if isinstance(options, dict)
                     else getattr(options, name, None))
            return given if given is not None else getattr(pipe_class, name, None)
        try:
            return cls(check_max_errors(pick("max_errors")),
                       check_max_error_rate(pick("max_error_rate")))
        except ValueError as exc:
            raise ValueError(f"{pipe_class.__qualname__}: {exc}") from None

    @property
    def active(self) -> bool:
        """Whether any threshold is set."""
        return self.max_errors is not None or self.max_error_rate is not None

    def exceeded(self, processed: int, errored: int, final: bool = False) -> bool:
        """Whether ``errored`` of ``processed`` items is too many: ``max_errors`` at
        once, ``max_error_rate`` from :data:`RATE_JUDGED_FROM` items on, or ``final``."""
        if self.max_errors is not None and errored > self.max_errors:
            return True
        return bool(self.max_error_rate is not None and processed
                    and (final or processed >= RATE_JUDGED_FROM)
                    and errored / processed > self.max_error_rate)

    def judge(self, pipeline: str, processed: int, errored: int, final: bool = False) -> None:
        """Raise :class:`ErrorThresholdExceeded` when :meth:`exceeded`."""
        if self.exceeded(processed, errored, final):
            raise ErrorThresholdExceeded(pipeline, errored, processed)
