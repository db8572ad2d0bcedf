"""What a run returns: counts, results, errors, timings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: The per-item counts of a run, as named on reports, run records and chunk rows.
COUNTS = ("processed", "succeeded", "continued", "ignored", "errored", "retried")


@dataclass
class RunReport:
    """The outcome of one run of one pipeline (and of the runs it chained).

    ``processed`` counts the items handed to ``process()``; each ended as ``succeeded``,
    ``continued``, ``ignored``, ``errored``, or was the item that ``broke`` the loop.
    ``results`` is empty unless something consumed them (a trigger, a ``finish``
    override, ``keep_results=True``). ``errors`` holds the captured failures.
    """

    pipeline: str
    processed: int = 0
    succeeded: int = 0
    continued: int = 0
    ignored: int = 0
    errored: int = 0
    #: Retries done (an item that healed on its third try counts 2), see ``Pipe.retry``.
    retried: int = 0
    broke: bool = False
    results: list[Any] = field(default_factory=list)
    errors: list[Any] = field(default_factory=list)
    elapsed: float = 0.0
    run_id: int | None = None
    dependencies: list[RunReport] = field(default_factory=list)
    triggered: list[RunReport] = field(default_factory=list)
    #: The run record's final status (``done`` or ``failed``) and why it failed.
    status: str = "running"
    message: str = ""
    #: A dry run's changes: ``{"app_label.Model": {"created": n, "deleted": m}}``.
    changes: dict = field(default_factory=dict)

    @property
    def items_per_second(self) -> float:
        """Processed items per second of elapsed time."""
        return self.processed / self.elapsed if self.elapsed else 0.0

    def __str__(self):
        return (
            f"{self.pipeline}: {self.processed} processed, {self.succeeded} succeeded, "
            f"{self.continued} continued, {self.ignored} ignored, {self.errored} errored"
            f"{', broke' if self.broke else ''} in {self.elapsed:.2f}s"
        )
