"""Transactions and savepoints of a run. Nothing else opens them around items.

A savepoint costs a round trip, and most items issue no query of their own (their
outputs are buffered). So an item's savepoint is opened lazily, by a connection
execute wrapper, just before the item's first query; an item that issues none rolls
back by dropping its buffered outputs alone.

Also here: the lock that serialises runs of one pipeline (:class:`RunTransaction`),
``transaction.on_commit`` callbacks of items (kept items' run after commit, rolled-back
items' never), and the connection that writes live counts outside the run's
transaction (:class:`OutsideWriter`).
"""

from __future__ import annotations

import hashlib
import threading
from contextlib import contextmanager, nullcontext

from django.db import connections, transaction

__all__ = [
    "ItemSavepoints", "OutsideWriter", "RunTransaction", "advisory_lock", "register_on_commit",
    "savepoint", "serialised",
]

# One lock per database without advisory locks (SQLite), for the runs of this process.
_local_locks: dict[str, threading.RLock] = {}
_local_locks_guard = threading.Lock()


def advisory_lock(using: str, name: str, shared: bool = False) -> None:
    """On PostgreSQL, wait for the advisory lock ``name`` and hold it until the current
    transaction ends; elsewhere nothing (see :func:`serialised`)."""
    connection = connections[using]
    if connection.vendor == "postgresql":
        function = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT {function}(%s)", [_advisory_key(name)])


def serialised(using: str):
    """Where the database has no advisory locks (SQLite: one writer at a time), a lock
    that the runs of this process on ``using`` take in turn, for a whole chain; on
    PostgreSQL nothing (:class:`RunTransaction` locks per pipeline)."""
    if connections[using].vendor == "postgresql":
        return nullcontext()
    with _local_locks_guard:
        return _local_locks.setdefault(using, threading.RLock())


def _advisory_key(name: str) -> int:
    """A signed 64-bit key for PostgreSQL's advisory locks, stable across processes."""
    digest = hashlib.sha1(f"datapipe:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class RunTransaction:
    """The run's transaction: one atomic block, or (``atomic=False``) one per batch.

    :meth:`checkpoint` commits the batch so far and opens the next when not atomic.

    ``lock`` (a pipeline name) serialises the transactions of runs of one pipeline on
    PostgreSQL, so that two runs started together each see the other's committed
    trackers and every item's outputs exist once: a transaction-scoped advisory lock
    (``shared=True`` for Celery chunks, which run side by side and take turns only with
    local runs). Elsewhere see :func:`serialised`.
    """

    def __init__(self, using: str, atomic: bool, lock: str | None = None, shared: bool = False):
        self.using = using
        self.atomic = atomic
        self.lock = lock
        self.shared = shared
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
        if self.lock is not None:
            try:
                self._acquire()
            except BaseException as exc:
                self._block.__exit__(type(exc), exc, exc.__traceback__)
                raise

    def _acquire(self) -> None:
        advisory_lock(self.using, self.lock, self.shared)

    def checkpoint(self, between=None) -> None:
        """Commit what is done so far, when the run is not one transaction.

        ``between()`` is called after the commit, before the next transaction opens:
        what it writes (the batch's error rows) is committed on its own, and not lost
        if the next batch is rolled back.
        """
        if not self.atomic:
            self._block.__exit__(None, None, None)
            try:
                if between is not None:
                    between()
            finally:
                self._open()

    @property
    def outermost(self) -> bool:
        """Whether the run's transaction is its connection's outermost atomic block."""
        return len(connections[self.using].atomic_blocks) <= 1


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
        self._hooks_mark = 0

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
        self._hooks_mark = len(self.connection.run_on_commit)

    def _take_hooks(self) -> list:
        """The ``on_commit`` callbacks the item registered, taken off the connection."""
        hooks = self.connection.run_on_commit
        taken = hooks[self._hooks_mark:]
        del hooks[self._hooks_mark:]
        return taken

    def commit(self) -> list:
        """Keep the item's changes (release its savepoint, if it was opened).

        Returns the item's ``on_commit`` callbacks, taken off the connection: they are
        registered again (:func:`register_on_commit`) once its outputs are saved, or
        dropped if the item fails at the flush.
        """
        self.armed = False
        hooks = self._take_hooks()
        if self.sid is not None:
            if self._combined:
                self._unreleased = True  # released with the next item's savepoint
            else:
                self.connection.savepoint_commit(self.sid)
            self.sid = None
        return hooks

    def rollback(self) -> None:
        """Undo the item's changes (roll back to its savepoint, if it was opened), and
        drop the ``on_commit`` callbacks it registered."""
        self.armed = False
        self._take_hooks()
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
    def connection_closed(self) -> bool:
        """Whether the connection was closed inside the run's transaction (by a pipe's
        ``connection.close()``): the transaction is lost, savepoints with it."""
        return self.connection.closed_in_transaction

    @property
    def used(self) -> bool:
        """Whether the current item opened its savepoint (it issued a query)."""
        return self.sid is not None


def register_on_commit(using: str, hooks: list) -> None:
    """Register again ``on_commit`` callbacks taken by :meth:`ItemSavepoints.commit`."""
    if hooks:
        connection = connections[using]
        ids = set(connection.savepoint_ids)
        connection.run_on_commit.extend((ids, func, robust) for _, func, robust in hooks)


class OutsideWriter:
    """Writes that other connections see at once, while the run's transaction is open.

    A connection of its own to the run's database, in autocommit: live counts of a run
    are written through it (PostgreSQL; SQLite allows one writer at a time).
    """

    def __init__(self, using: str):
        self.connection = connections.create_connection(using)

    def update(self, model, pk, values: dict) -> None:
        """``UPDATE`` the row ``pk`` of ``model`` with plain ``values`` (column: value)."""
        quote = self.connection.ops.quote_name
        assignments = ", ".join(f"{quote(model._meta.get_field(name).column)} = %s"
                                for name in values)
        sql = (f"UPDATE {quote(model._meta.db_table)} SET {assignments} "
               f"WHERE {quote(model._meta.pk.column)} = %s")
        with self.connection.cursor() as cursor:
            cursor.execute(sql, [*values.values(), pk])

    def close(self) -> None:
        """Close the connection."""
        self.connection.close()


@contextmanager
def savepoint(using: str):
    """A savepoint for the framework's own batch writes; rolled back on exception."""
    with transaction.atomic(using=using, savepoint=True):
        yield
