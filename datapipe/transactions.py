"""Transactions and savepoints of a run. Nothing else opens them around items.

A savepoint costs a round trip, and most items issue no query of their own (their
outputs are buffered). So an item's savepoint is opened lazily, by a connection
execute wrapper, just before the item's first query; an item that issues none rolls
back by dropping its buffered outputs alone.
"""

from __future__ import annotations

from contextlib import contextmanager

from django.db import connections, transaction


class RunTransaction:
    """The run's transaction: one atomic block, or (``atomic=False``) one per batch.

    :meth:`checkpoint` commits the batch so far and opens the next when not atomic.
    """

    def __init__(self, using: str, atomic: bool):
        self.using = using
        self.atomic = atomic
        self._block = None

    def __enter__(self):
        self._open()
        return self

    def __exit__(self, *exc_info):
        block, self._block = self._block, None
        return block.__exit__(*exc_info)

    def _open(self):
        self._block = transaction.atomic(using=self.using)
        self._block.__enter__()

    def checkpoint(self) -> None:
        """Commit what is done so far, when the run is not one transaction."""
        if not self.atomic:
            self._block.__exit__(None, None, None)
            self._open()


class ItemSavepoints:
    """Per-item savepoints, opened just before an item's first query.

    Use as a context manager around the item loop; call :meth:`begin` before an item
    and :meth:`commit` or :meth:`rollback` after it.
    """

    def __init__(self, using: str):
        self.connection = connections[using]
        self.armed = False
        self.sid = None
        self._wrapper = None

    def __enter__(self):
        self._wrapper = self.connection.execute_wrapper(self)
        self._wrapper.__enter__()
        return self

    def __exit__(self, *exc_info):
        self.armed = False
        self._wrapper.__exit__(*exc_info)

    def __call__(self, execute, sql, params, many, context):
        if self.armed:
            self.armed = False  # before savepoint(): its own query passes through here
            self.sid = self.connection.savepoint()
        return execute(sql, params, many, context)

    def begin(self) -> None:
        """Arm the savepoint of the next item."""
        self.sid = None
        self.armed = True

    def commit(self) -> None:
        """Keep the item's changes (release its savepoint, if it was opened)."""
        self.armed = False
        if self.sid is not None:
            self.connection.savepoint_commit(self.sid)
            self.sid = None

    def rollback(self) -> None:
        """Undo the item's changes (roll back to its savepoint, if it was opened)."""
        self.armed = False
        if self.sid is not None:
            # As Atomic.__exit__ does: a failed query inside save() marked the whole
            # block for rollback; rolling back to the item's savepoint repairs it.
            self.connection.needs_rollback = False
            self.connection.savepoint_rollback(self.sid)
            # Released, so that failed items do not nest their successors' savepoints.
            self.connection.savepoint_commit(self.sid)
            self.sid = None

    @property
    def used(self) -> bool:
        """Whether the current item opened its savepoint (it issued a query)."""
        return self.sid is not None


@contextmanager
def savepoint(using: str):
    """A savepoint for the framework's own batch writes; rolled back on exception."""
    with transaction.atomic(using=using, savepoint=True):
        yield
