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

    On PostgreSQL an item costs one savepoint round trip, not two: every item reuses
    one savepoint name, and keeps it established after its commit or rollback; the
    next item to query sends ``RELEASE SAVEPOINT; SAVEPOINT`` as one statement string,
    and the loop's end releases the last. (SQLite's savepoints cost no round trip.)
    """

    def __init__(self, using: str):
        self.connection = connections[using]
        self.armed = False
        self.sid = None
        self._wrapper = None
        self._combined = self.connection.vendor == "postgresql"  # several statements per query
        self._name = f"datapipe_item_{id(self):x}"
        # The reused savepoint is still established (kept by an earlier item), inside
        # the Django savepoint ``_enclosing``. Committing the transaction, or releasing
        # that enclosing savepoint (a batch commit of a run nested in atomic()), ends
        # it too: the next item must not release it then.
        self._unreleased = False
        self._enclosing = None
        self._watching_commit = False

    def __enter__(self):
        self._wrapper = self.connection.execute_wrapper(self)
        self._wrapper.__enter__()
        return self

    def __exit__(self, *exc_info):
        self.armed = False
        self._wrapper.__exit__(*exc_info)
        if self._still_established() and exc_info[0] is None:
            self.connection.savepoint_commit(self._name)
        self._unreleased = False

    def __call__(self, execute, sql, params, many, context):
        if not self.armed:
            return execute(sql, params, many, context)
        self.armed = False  # before the savepoint: its own query passes through here
        if not self._combined:
            self.sid = self.connection.savepoint()
            return execute(sql, params, many, context)
        return self._open_with(execute, sql, params, many, context)

    def _open_with(self, execute, sql, params, many, context):
        """Release the previous item's savepoint and open this one's, in one trip."""
        ops = self.connection.ops
        statements = [ops.savepoint_create_sql(self._name)]
        if self._still_established():
            statements.insert(0, ops.savepoint_commit_sql(self._name))
        self.sid, self._unreleased = self._name, False
        self._enclosing = self._innermost_django_savepoint()
        with self.connection.cursor() as cursor:
            cursor.execute("; ".join(statements))
        return execute(sql, params, many, context)

    def _innermost_django_savepoint(self):
        ids = self.connection.savepoint_ids
        return ids[-1] if ids else None

    def _still_established(self) -> bool:
        return self._unreleased and self._enclosing == self._innermost_django_savepoint()

    def _committed(self) -> None:
        self._unreleased = False
        self._watching_commit = False

    def begin(self) -> None:
        """Arm the savepoint of the next item."""
        self.sid = None
        self.armed = True
        if self._combined and not self._watching_commit:
            # Registered between items, outside any savepoint a rollback would discard.
            transaction.on_commit(self._committed, using=self.connection.alias)
            self._watching_commit = True

    def commit(self) -> None:
        """Keep the item's changes (release its savepoint, if it was opened)."""
        self.armed = False
        if self.sid is not None:
            if self._combined:
                self._unreleased = True  # released with the next item's savepoint
            else:
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
            if self._combined:
                self._unreleased = True  # still established after the rollback to it
            else:
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
