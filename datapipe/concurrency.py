"""I/O concurrency: each item's ``fetch()``, run for up to ``concurrency`` items at once.

The engine reads its items through a fetcher (:func:`fetcher_for`, one per run):
``ahead(items)`` yields each item in order with the pipe instance that ``process()`` will
run on and what is pending for it; ``complete(pipe, pending)``, called inside the
engine's flow-control ``try``, returns once that item's ``fetch()`` is done and raises
what it raised, so that anything ``fetch`` raises counts for its item as if raised in
``process()``. ``process()`` itself stays in the caller's thread, in order, one
savepoint per item.

=========================  =====================================================
the pipeline's ``fetch``   how it runs
=========================  =====================================================
not overridden             not at all: the loop is the one without fetch
``def``, concurrency 1     right before ``process()``, in the caller's thread
``def``, concurrency > 1   on a thread pool of ``concurrency`` threads
``async def``              on one event loop per run, ``concurrency`` at a time:
                           in the caller's thread (run while the engine waits for
                           an item), or in a thread of its own when the caller's
                           thread already runs a loop
=========================  =====================================================

At most :data:`WINDOW` x ``concurrency`` items are read ahead of the one being
processed, so memory stays bounded whatever the number of items; fetches of items read
ahead of a ``PipeBreak`` or a failed run are cancelled or waited for, and their outcome
dropped.

``fetch`` must not use the database: it runs outside the run's transaction (on other
threads, each with connections of its own, or interleaved with other items' fetches). A
query there raises :class:`~datapipe.exceptions.FetchUsedDatabase` for the item: an
execute wrapper refuses it on the connections of the fetching threads (of the task,
under ``DJANGO_ALLOW_ASYNC_UNSAFE``), and Django's ``SynchronousOnlyOperation`` in an
async hook is turned into it.

A pipeline's ``fetch`` overrides are all ``def`` or all ``async def``
(:meth:`~datapipe.Pipe.fetch_kind` refuses a mix when the run starts): a plain override
calling an async one would get a coroutine that nobody awaits.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.core.exceptions import SynchronousOnlyOperation
from django.db import connections

from .exceptions import FetchUsedDatabase, InvalidFetch
from .options import positive_int

__all__ = ["NOTHING_FETCHED", "WINDOW", "fetch_once", "fetcher_for"]

#: Items in flight (read ahead of the one processed) per unit of ``concurrency``: enough
#: that a slow item at the head of the window does not idle the other fetches.
WINDOW = 4


class _NothingFetched:
    """What the base ``Pipe.fetch`` returns: None-like, and awaitable, so that both
    ``super().fetch()`` in a plain override and ``await super().fetch()`` in an async
    one work."""

    __slots__ = ()

    def __await__(self):
        return
        yield  # a generator that stops at once: ``await`` gives None

    def __repr__(self):
        return "NOTHING_FETCHED"


NOTHING_FETCHED = _NothingFetched()


def _name(cls) -> str:
    return cls.__qualname__


def _database_refused(cls, what: str) -> FetchUsedDatabase:
    return FetchUsedDatabase(
        f"{_name(cls)}.fetch() used the database ({what}): fetch must not use the database. "
        "It runs outside the run's transaction, for several items at once: query in "
        "prepare() or process() and keep what fetch needs on self or self.local."
    )


class _RefuseQueries:
    """A connection's execute wrapper refusing every query while ``active``."""

    def __init__(self, cls, active: bool = False):
        self.cls = cls
        self.active = active

    def __call__(self, execute, sql, params, many, context):
        if self.active:
            raise _database_refused(self.cls, f"{str(sql)[:80]!r}")
        return execute(sql, params, many, context)

    def install(self) -> None:
        """Wrap every connection of the current thread (connecting none)."""
        for alias in connections:
            connections[alias].execute_wrappers.insert(0, self)  # outermost: first to see

    def uninstall(self) -> None:
        for alias in connections:
            wrappers = connections[alias].execute_wrappers
            if self in wrappers:
                wrappers.remove(self)

    def __enter__(self):
        self.active = True

    def __exit__(self, *exc_info):
        self.active = False


def _close_opened() -> None:
    """Close the connections of this thread (or task) that a refused query opened: a
    query connects before the execute wrapper refuses it."""
    for connection in connections.all(initialized_only=True):
        if connection.connection is not None:
            connection.close()


def _call_sync(pipe) -> None:
    """``pipe.fetch()`` of a plain ``def`` hook; what it returns is ignored, unless it is
    an awaitable (an ``async`` hook declared without ``async``)."""
    pipe._fetching = True
    try:
        returned = pipe.fetch()
    finally:
        pipe._fetching = False
    # None and NOTHING_FETCHED first: isawaitable() costs an ABC check per item.
    if returned is not None and returned is not NOTHING_FETCHED and inspect.isawaitable(returned):
        if inspect.iscoroutine(returned):
            returned.close()  # never awaited: no RuntimeWarning on top of the error
        raise InvalidFetch(
            f"{_name(type(pipe))}.fetch() returned {type(returned).__name__} {returned!r:.60} "
            "instead of running: declare it `async def fetch(self)` (and every fetch "
            "override of the pipeline with it), or make it wait for its I/O itself."
        )


async def _call_async(pipe, semaphore: asyncio.Semaphore, refuse: _RefuseQueries | None):
    """``await pipe.fetch()``, at most ``concurrency`` at a time.

    Under a running loop Django refuses queries itself (``SynchronousOnlyOperation``),
    unless ``DJANGO_ALLOW_ASYNC_UNSAFE`` is set: then ``refuse`` does, on the task's own
    connections (Django's are per task under a loop).
    """
    async with semaphore:
        pipe._fetching = True
        if refuse is not None:
            refuse.install()
        try:
            await pipe.fetch()
        except SynchronousOnlyOperation as exc:
            # The item's frames down to the ORM call stay in the error row's traceback
            # (tb_next: this frame is added again by the raise).
            error = _database_refused(type(pipe), "Django's SynchronousOnlyOperation")
            raise error.with_traceback(exc.__traceback__.tb_next) from exc
        finally:
            pipe._fetching = False
            if refuse is not None:
                _close_opened()


def fetch_once(pipe) -> None:
    """Run ``pipe.fetch()`` alone (``Pipe.eval``): plain hooks here, async ones on a loop
    of their own; the database is refused as in a run."""
    kind = type(pipe).fetch_kind()
    if kind is None:
        return
    if kind == "sync":
        refuse = _RefuseQueries(type(pipe))
        refuse.install()
        try:
            with refuse:
                _call_sync(pipe)
        finally:
            refuse.uninstall()
        return
    with _AsyncFetcher(type(pipe), None, 1) as fetcher:
        fetcher.complete(pipe, fetcher.submit(pipe))


def fetcher_for(cls, state, concurrency: int | None):
    """The fetcher of a run of the pipeline class ``cls`` (see the module's table).

    ``concurrency`` is the session's override, None for the class attribute. Raises
    TypeError/ValueError for a bad ``concurrency`` and PipelineDefinitionError for a
    pipeline mixing async and plain ``fetch`` overrides.
    """
    if concurrency is None:
        concurrency = positive_int(f"{_name(cls)}.concurrency", cls.concurrency)
    kind = cls.fetch_kind()
    if kind is None:
        return _NoFetch(cls, state)
    if kind == "async":
        return _AsyncFetcher(cls, state, concurrency)
    if concurrency == 1:
        return _InlineFetcher(cls, state)
    return _ThreadFetcher(cls, state, concurrency)


class _NoFetch:
    """No class overrides ``fetch``: each item's instance, made as it comes."""

    def __init__(self, cls, state):
        self.cls = cls
        self.state = state

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        return None

    def ahead(self, items: Iterable) -> Iterator[tuple[Any, Any, Any]]:
        """Each item, the instance ``process()`` runs on, and what is pending for it."""
        cls, state = self.cls, self.state
        for item in items:
            yield item, cls(item, state=state), None

    def again(self, item) -> tuple[Any, Any]:
        """A fresh instance for another try of ``item`` (``Pipe.retry``), with its fetch
        started: ``(instance, pending)`` as :meth:`ahead` yields them."""
        return self.cls(item, state=self.state), None

    def complete(self, pipe, pending) -> None:
        """Return once ``pipe``'s fetch is done; raise what it raised."""


class _InlineFetcher(_NoFetch):
    """A plain ``fetch`` at concurrency 1: called right before ``process()``, in the
    caller's thread, with the database refused while it runs."""

    def __enter__(self):
        self.refuse = _RefuseQueries(self.cls)
        self.refuse.install()
        return self

    def __exit__(self, *exc_info):
        self.refuse.uninstall()

    def complete(self, pipe, pending) -> None:
        refuse = self.refuse
        refuse.active = True
        try:
            _call_sync(pipe)
        finally:
            refuse.active = False


class _WindowFetcher(_NoFetch):
    """Fetches started ahead, at most ``WINDOW * concurrency`` items in flight."""

    def __init__(self, cls, state, concurrency: int):
        super().__init__(cls, state)
        self.concurrency = concurrency
        self.window = WINDOW * concurrency

    def again(self, item) -> tuple[Any, Any]:
        pipe = self.cls(item, state=self.state)
        return pipe, self.submit(pipe)

    def ahead(self, items: Iterable) -> Iterator[tuple[Any, Any, Any]]:
        cls, state, window = self.cls, self.state, deque()
        for item in items:
            pipe = cls(item, state=state)
            window.append((item, pipe, self.submit(pipe)))
            if len(window) >= self.window:
                yield window.popleft()
        while window:
            yield window.popleft()

    def submit(self, pipe):
        """Start ``pipe``'s fetch; return what :meth:`complete` waits for."""
        raise NotImplementedError


class _ThreadFetcher(_WindowFetcher):
    """Plain ``fetch`` hooks on a pool of ``concurrency`` threads, whose database
    connections refuse every query."""

    def __enter__(self):
        self.pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="datapipe-fetch",
                                       initializer=_RefuseQueries(self.cls, active=True).install)
        return self

    def __exit__(self, *exc_info):
        # Items read ahead of a PipeBreak (or of a failed run) are not fetched any more.
        self.pool.shutdown(wait=True, cancel_futures=True)

    def submit(self, pipe):
        return self.pool.submit(self._fetch, pipe)

    @staticmethod
    def _fetch(pipe) -> None:
        try:
            _call_sync(pipe)
        finally:
            _close_opened()

    def complete(self, pipe, pending) -> None:
        pending.result()


class _AsyncFetcher(_WindowFetcher):
    """``async def fetch`` hooks on one event loop for the run.

    The loop runs in the caller's thread while :meth:`complete` waits (the engine's own
    queries never run under a running loop, so Django lets them through); if the caller's
    thread already runs a loop, it runs in a thread of its own instead. Either way, the
    database is refused to the hooks.
    """

    def __enter__(self):
        self.loop = asyncio.new_event_loop()
        self.semaphore = asyncio.Semaphore(self.concurrency)
        unsafe = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")  # as Django reads it
        self.refuse = _RefuseQueries(self.cls, active=True) if unsafe else None
        self.thread = None
        self.started: set = set()  # this thread's tasks not completed yet (the window)
        if _running_loop() is not None:
            self.thread = threading.Thread(target=self._serve, name="datapipe-fetch-loop",
                                           daemon=True)
            self.thread.start()
        return self

    def _serve(self) -> None:
        """The loop's thread; its connections closed at the end."""
        try:
            self.loop.run_forever()
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        finally:
            self.loop.close()
            connections.close_all()

    def __exit__(self, *exc_info):
        if self.thread is None:
            for task in self.started:  # read ahead, never processed: outcome dropped
                if task.done() and not task.cancelled():
                    task.exception()  # retrieved: no "never retrieved" log at collection
            try:
                self.loop.run_until_complete(_cancel_pending())
                self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            finally:
                self.loop.close()
            return
        try:
            asyncio.run_coroutine_threadsafe(_cancel_pending(), self.loop).result()
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join()

    def submit(self, pipe):
        coroutine = _call_async(pipe, self.semaphore, self.refuse)
        if self.thread is not None:
            return asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        task = self.loop.create_task(coroutine)
        self.started.add(task)
        return task

    def complete(self, pipe, pending) -> None:
        if self.thread is not None:
            pending.result()
            return
        self.started.discard(pending)
        if not pending.done():
            # Runs every fetch started, not only this one; a fetch done already costs
            # no turn of the loop (a turn costs more than a light item's processing).
            self.loop.run_until_complete(pending)
        pending.result()


def _running_loop():
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


async def _cancel_pending() -> None:
    """Cancel the fetches still running (items read ahead of the end) and wait for them;
    their outcomes are dropped."""
    current = asyncio.current_task()
    tasks = [task for task in asyncio.all_tasks() if task is not current]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
