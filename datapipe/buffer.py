"""The bulk-save buffer: outputs attributed to the item that made them.

Each item gets an :class:`ItemRecord`; ``add_to_save`` appends its objects there, and
``add_to_update`` its updates (:mod:`datapipe.updates`). A flush inserts every pending
record's objects with one ``bulk_create`` per model (in the order models first
appeared, so an object may point to a buffered object of an earlier model), then
applies their updates, in the same savepoint (so an update may point to an object
inserted just before). When that fails, the batch is split in halves, each retried in
its own savepoint, down to the items whose objects cannot be inserted or whose updates
cannot be applied: those items fail alone (their outputs and updates dropped), the
others are saved. Any exception counts, not only database errors: a field value that
does not convert (``ValueError``), a foreign key to an unsaved object (``ValueError``),
a wrong type (``TypeError``) are the item's as much as a constraint the database
enforces.

Limit: an item failing at the flush has already finished ``process()``; queries it ran
itself (``direct=True`` saves included) are kept. Its buffered outputs are not.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from .bulk import insert_objects
from .transactions import savepoint
from .updates import apply_updates


class ItemRecord:
    """One item of the run and what it produced."""

    __slots__ = (
        "item",
        "objects",
        "saved",
        "updates",
        "result",
        "key",
        "error",
        "continued",
        "on_commit",
    )

    def __init__(self, item: Any):
        self.item = item
        self.objects: list = []  # buffered, unsaved
        self.saved: list = []  # saved at once (direct=True)
        self.updates: list = []  # buffered (object, field names): not outputs
        self.result = None
        self.key = None  # its Identity once known (model items), for tracking
        self.error: BaseException | None = None
        self.continued = False  # ended by PipeContinue
        self.on_commit: list = []  # its transaction.on_commit callbacks, until it is saved

    def outputs(self) -> list:
        """Every object this item saved, buffered or direct."""
        return self.saved + self.objects if self.saved else self.objects


class SaveBuffer:
    """Collects the outputs of the current item and of the items pending a flush."""

    def __init__(self, using: str):
        self.using = using
        self.current: ItemRecord = ItemRecord(None)
        self.pending: list[ItemRecord] = []
        self.size = 0

    # Called by Pipe.add_to_save --------------------------------------------------------

    def add(self, objs: Sequence, direct: bool) -> None:
        """Attribute ``objs`` to the current item; save them now when ``direct``."""
        if direct:
            for obj in objs:
                obj.save(using=self.using)
            self.current.saved.extend(objs)
        else:
            self.current.objects.extend(objs)
            self.size += len(objs)

    def update(self, obj, fields: tuple[str, ...]) -> None:
        """Attribute the update of ``fields`` of ``obj`` to the current item."""
        self.current.updates.append((obj, fields))
        self.size += 1

    # Called by the engine ----------------------------------------------------------------

    def begin(self, item: Any) -> ItemRecord:
        """Start the record of ``item``; later ``add`` calls are attributed to it."""
        self.current = ItemRecord(item)
        return self.current

    def keep(self, record: ItemRecord) -> None:
        """The item succeeded: its outputs wait for the next flush."""
        self.pending.append(record)

    def drop(self, record: ItemRecord) -> None:
        """The item was rolled back: forget its buffered outputs and updates."""
        self.size -= len(record.objects) + len(record.updates)
        record.objects = []
        record.saved = []
        record.updates = []
        record.on_commit = []

    def take(self) -> list[ItemRecord]:
        """Hand over the pending records and empty the buffer."""
        records, self.pending, self.size = self.pending, [], 0
        return records

    def insert(
        self, records: list[ItemRecord], before: Callable[[list[ItemRecord]], None]
    ) -> list[ItemRecord]:
        """Insert the records' objects, then apply their updates; return the records
        whose insert or update failed.

        ``before(records)`` runs in the same savepoint, just before the insert (reparse
        deletes old outputs there, so a failed item keeps them).
        """
        failed: list[ItemRecord] = []
        self._insert_or_split(records, before, failed)
        return failed

    def _insert_or_split(self, records, before, failed):
        snapshot = [(obj, obj.__dict__.copy()) for r in records for obj in r.objects]
        # Updated objects too: a foreign key set from an object inserted by the failed try.
        updated = [(obj, obj.__dict__.copy()) for r in records for obj, _ in r.updates]
        try:
            with savepoint(self.using):
                before(records)
                self._bulk_create(records)
                apply_updates((u for r in records for u in r.updates), self.using)
        except Exception as exc:  # whatever an object's insert or update raises is its item's
            for obj, state in updated:
                obj.__dict__.clear()
                obj.__dict__.update(state)
            for obj, state in snapshot:  # undo pks and foreign keys set by the failed insert
                obj.__dict__.clear()
                obj.__dict__.update(state)
                obj._state.adding = True
            if len(records) == 1:
                records[0].error = exc
                failed.append(records[0])
                return
            middle = len(records) // 2
            self._insert_or_split(records[:middle], before, failed)
            self._insert_or_split(records[middle:], before, failed)

    def _bulk_create(self, records):
        by_model: dict[type, list] = {}
        for record in records:
            for obj in record.objects:
                by_model.setdefault(type(obj), []).append(obj)
        for model, objs in by_model.items():
            insert_objects(model, objs, self.using)
