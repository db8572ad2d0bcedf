"""What a dry run would change: rows created and deleted per model, counted while the
run does them (and before everything is rolled back).

The engine counts the outputs it saves, :mod:`datapipe.tracking` the outputs it deletes
(reparse and its cascades along triggers, foreign-key cascades included, as
``QuerySet.delete()`` reports them). Nothing is counted outside :func:`counting`: a run
that is not a dry run pays nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = ["Changes", "counting", "created", "deleted", "in_dry_run"]


class Changes(dict):
    """``{"app_label.ModelName": {"created": n, "deleted": m}}``; a label may be read in
    lower case too (``changes["app_label.modelname"]``)."""

    def count(self, label: str, kind: str, n: int) -> None:
        if n:
            entry = self.setdefault(label, {"created": 0, "deleted": 0})
            entry[kind] += n

    def __missing__(self, label: str):
        for known, entry in self.items():
            if known.lower() == label.lower():
                return entry
        raise KeyError(label)

    def __contains__(self, label) -> bool:
        return dict.__contains__(self, label) or any(
            known.lower() == str(label).lower() for known in self)


_current: ContextVar[Changes | None] = ContextVar("datapipe_changes", default=None)


@contextmanager
def counting() -> Iterator[Changes]:
    """Count the changes of what runs inside (a dry run)."""
    changes = Changes()
    token = _current.set(changes)
    try:
        yield changes
    finally:
        _current.reset(token)


def in_dry_run() -> bool:
    """True inside a dry run (whose work is all rolled back: no ``finish_run``, sink or
    notification runs for it)."""
    return _current.get() is not None


def created(objects: Iterable) -> None:
    """Count saved ``objects`` as created (when counting)."""
    changes = _current.get()
    if changes is not None:
        for obj in objects:
            changes.count(type(obj)._meta.label, "created", 1)


def deleted(by_label: dict[str, int]) -> None:
    """Count ``QuerySet.delete()``'s second value (rows by model label) as deleted."""
    changes = _current.get()
    if changes is not None:
        for label, n in by_label.items():
            changes.count(label, "deleted", n)
