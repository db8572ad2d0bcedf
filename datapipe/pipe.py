"""``Pipe``: the base class users extend, its hooks, containers and helpers.

Hooks call ``super()`` and run in MRO order. Three containers hold state:
attributes on ``self`` live for one item, ``self.local`` for one run (cleared after
``finish``), ``self.context`` for every pipeline chained to the run (depends, triggers,
Celery chunks, where it travels JSON-encoded).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Sequence
from typing import Any

from django.db.models import Model

from .concurrency import NOTHING_FETCHED, fetch_once
from .exceptions import (
    InvalidItems,
    InvalidOutput,
    PipeBreak,
    PipeContinue,
    PipeIgnore,
    PipelineDefinitionError,
)
from .registry import pipeline, registry
from .updates import checked_fields

__all__ = ["AttrDict", "Pipe", "pipeline"]


class AttrDict(dict):
    """A dict whose keys read and write as attributes (``ctx.total += 1``)."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name, value):
        self[name] = value

    def __delattr__(self, name):
        try:
            del self[name]
        except KeyError:
            raise AttributeError(name) from None


class PipeState:
    """What the instances of one run share: the containers and the output buffer."""

    __slots__ = ("local", "context", "buffer")

    def __init__(self, context=None, buffer=None):
        self.local = AttrDict()
        self.context = context if isinstance(context, AttrDict) else AttrDict(context or {})
        self.buffer = buffer


class Pipe:
    """Base of every pipe. Subclass it, override hooks, call ``super()``.

    Class attributes:

    ``depends``
        Names of pipelines to run on the same items before this one; merged across
        base classes.
    ``track``
        Record the outputs of each item for reparse (default True).
    ``concurrency``
        For how many items at a time :meth:`fetch` runs (default 1: one item after
        the other, before its ``process``). ``get_session(concurrency=N)`` overrides it
        for the session's runs.
    ``retry``
        A :class:`~datapipe.Retry`: items failing with one of its exceptions are tried
        again later, while the others go on (default None: never).
    ``max_errors`` / ``max_error_rate``
        Stop the run (as ``PipeError`` does) and raise
        :class:`~datapipe.exceptions.ErrorThresholdExceeded` once more than
        ``max_errors`` items failed, or more than this fraction of the items processed
        (judged from 100 items on, and at the end). Default None: never.
    ``sink``
        A :class:`datapipe.sinks.Sink` (or a list): the run's results are written to
        its file after the run commits (default None).
    """

    depends: Sequence[str] = ()
    track: bool = True
    concurrency: int = 1
    retry = None
    max_errors: int | None = None
    max_error_rate: float | None = None
    sink = None
    _fetching = False  # set on the instance while its fetch() runs

    def __init__(self, item: Any = None, *, state: PipeState | None = None):
        self.item = item
        self._state = state if state is not None else PipeState()

    @property
    def local(self) -> AttrDict:
        """Attributes that live for one run; cleared after ``finish``."""
        return self._state.local

    @property
    def context(self) -> AttrDict:
        """Attributes shared with every chained pipeline; must stay JSON-encodable."""
        return self._state.context

    # Hooks -----------------------------------------------------------------------

    def source(self) -> Iterable[Any]:
        """What a run given no items processes (``sess.run("name")``, ``datapipe run
        name``, scheduled runs): a QuerySet, a list or an iterable. Called once per run,
        on an instance with no item. The base class has none: such a run raises
        :class:`~datapipe.exceptions.InvalidItems`.
        """
        raise InvalidItems(
            f"{type(self).__qualname__} was given no items and has no source(): pass the "
            "items to run(), or write def source(self): return MyModel.objects.all() on "
            "the pipe."
        )

    @classmethod
    def items_from_source(cls, context=None) -> Iterable[Any]:
        """The items of :meth:`source`, checked (never None)."""
        items = cls(state=PipeState(context)).source()
        if items is None:
            raise InvalidItems(f"{cls.__qualname__}.source() returned None: return the items "
                               "to process (a QuerySet, a list or an iterable).")
        return items

    def prepare(self, items: Iterable[Any]) -> Iterable[Any]:
        """Called once per run (per chunk in Celery) on an instance with no item.

        Returns what to process: the items unchanged, filtered, reordered, or a new
        QuerySet or list. Returning None is an error. Items handed to the run but not
        returned have their old outputs deleted (reparse).
        """
        return items

    def fetch(self):
        """Called once per item, on the instance that ``process`` then runs on, for its
        I/O (HTTP calls, remote APIs, downloads); the base does nothing.

        Declare it ``def`` (run on a thread pool) or ``async def`` (run on an event loop,
        ``await super().fetch()``), the same in every override of the pipeline: mixing
        them is refused when the run starts. Up to :attr:`concurrency` items fetch at a
        time, outside the run's transaction, so fetch must not use the database (a query
        fails the item with ``FetchUsedDatabase``) nor call ``add_to_save`` or
        ``add_to_update``: keep what it got on ``self`` for ``process``. Anything it
        raises, flow control included, counts for its item as if raised in ``process``.
        The return value is ignored.
        """
        return NOTHING_FETCHED

    def process(self) -> Any:
        """Called once per item on a fresh instance; ``self.item`` is the item.

        The base returns ``self.item``. A non-None return value is collected as the
        item's result (for ``finish`` and triggers).
        """
        return self.item

    def finish(self, results: list[Any]) -> None:
        """Called once per run, after the last item, with the collected results.

        Runs inside the run's transaction; the return value is ignored.
        """

    def finish_run(self, run) -> None:
        """Called once per run with its ``PipelineRun`` record, after ``finish``.

        In a distributed run it is called once, after the last chunk. The return value
        is ignored.
        """

    # Outputs ---------------------------------------------------------------------

    def add_to_save(self, *objs, direct: bool = False):
        """Buffer unsaved model instances for bulk insert; return the object or a tuple.

        With ``direct=True`` each object is saved at once (for objects that later ones
        point to). Saved objects are tracked as this item's outputs for reparse.
        """
        if self._fetching:
            raise InvalidOutput(
                f"add_to_save() in {type(self).__qualname__}.fetch(): fetch runs outside the "
                "run's transaction, for several items at once. Keep what fetch got on self "
                "and add the outputs in process()."
            )
        if not objs:
            raise InvalidOutput("add_to_save() needs at least one unsaved model instance.")
        for obj in objs:
            if not isinstance(obj, Model):
                raise InvalidOutput(
                    f"add_to_save() takes unsaved model instances, not {type(obj).__name__}: "
                    f"{obj!r:.80}"
                )
            if not obj._state.adding:
                raise InvalidOutput(
                    f"add_to_save() takes unsaved model instances; {obj!r:.80} "
                    "is already saved (update it with add_to_update(obj, fields=[...]))."
                )
        if self._state.buffer is not None:
            self._state.buffer.add(objs, direct)
        elif direct:
            for obj in objs:
                obj.save()
        return objs[0] if len(objs) == 1 else objs

    def add_to_update(self, obj, fields: Sequence[str]):
        """Buffer the update of ``fields`` of the saved instance ``obj``; return ``obj``.

        The updates pending at a flush are written after the buffered inserts, in the same
        savepoint (so a foreign key may point to an object given to :meth:`add_to_save`),
        in one statement per model and fields (:mod:`datapipe.updates`). Values are read
        from the objects then; ``pre_save`` does not run (an ``auto_now`` field is not
        set), as with ``bulk_update``. A row updated by several items takes the last
        value. An update that fails fails its item alone, as an insert does; a row that
        no longer exists is not an error (the UPDATE matches nothing).

        Updated rows are not outputs: reparse never deletes them, and running the item
        again sets the fields again. Updates made in ``prepare`` or ``finish`` belong to
        no item; without a run (:meth:`eval`) the object is saved at once with
        ``update_fields``.
        """
        if self._fetching:
            raise InvalidOutput(
                f"add_to_update() in {type(self).__qualname__}.fetch(): fetch runs outside "
                "the run's transaction, for several items at once. Keep what fetch got on "
                "self and add the updates in process()."
            )
        if not isinstance(obj, Model):
            raise InvalidOutput(
                f"add_to_update() takes a saved model instance, not {type(obj).__name__}: "
                f"{obj!r:.80}"
            )
        if obj.pk is None or obj._state.adding:
            raise InvalidOutput(
                f"add_to_update() takes a saved model instance; {obj!r:.80} is not saved "
                "(buffer new objects with add_to_save)."
            )
        names = checked_fields(obj, fields)
        if self._state.buffer is not None:
            self._state.buffer.update(obj, names)
        else:
            obj.save(update_fields=names)
        return obj

    # Flow control helpers ----------------------------------------------------------

    def ignore(self, message: str | None = None):
        """Raise :class:`PipeIgnore`: roll this item back and go on."""
        raise PipeIgnore(message)

    def break_(self):
        """Raise :class:`PipeBreak`: roll this item back and stop the loop."""
        raise PipeBreak()

    def continue_(self, value: Any = PipeContinue._unset):
        """Raise :class:`PipeContinue`: keep this item, collect ``value`` (default the item)."""
        raise PipeContinue(value)

    # Development aid -----------------------------------------------------------------

    @classmethod
    def eval(cls, item: Any, context: dict | None = None) -> Any:
        """Run this class alone on ``item`` and return what ``process()`` returns.

        ``prepare([item])`` runs first (so containers are set up), then ``fetch()``
        (an async one on an event loop of its own), then ``process()``; exceptions,
        flow-control ones included, propagate. Buffered outputs are not saved
        (``direct=True`` ones are); updates (``add_to_update``) are, at once. Returns None
        if ``prepare`` filters the item out.
        """
        state = PipeState(context)
        prepared = cls(state=state).prepare([item])
        for prepared_item in prepared:
            pipe = cls(prepared_item, state=state)
            fetch_once(pipe)
            return pipe.process()
        return None

    @classmethod
    def fetch_kind(cls) -> str | None:
        """``"async"`` or ``"sync"``: how the ``fetch`` overrides of the MRO are declared;
        None when no class overrides it. Raises :class:`PipelineDefinitionError` when
        they mix ``async def`` and ``def`` (a plain one calling an async one through
        ``super()`` would get a coroutine that nobody awaits)."""
        kinds: dict[str, list[str]] = {}
        for klass in cls.__mro__:
            if klass is not Pipe and "fetch" in vars(klass):
                kind = "async" if inspect.iscoroutinefunction(vars(klass)["fetch"]) else "sync"
                kinds.setdefault(kind, []).append(klass.__qualname__)
        if len(kinds) > 1:
            raise PipelineDefinitionError(
                f"{cls.__qualname__} mixes async def fetch ({', '.join(kinds['async'])}) "
                f"and plain def fetch ({', '.join(kinds['sync'])}): declare every fetch "
                "override of a pipeline the same way, all `async def` (awaiting "
                "super().fetch()) or all `def`."
            )
        return next(iter(kinds), None)

    @classmethod
    def consumes_results(cls) -> bool:
        """Whether some class of the MRO overrides ``finish``, or the pipeline has a
        ``sink`` (so results are needed)."""
        return cls.sink is not None or any(
            "finish" in vars(klass) for klass in cls.__mro__ if klass is not Pipe)

    @classmethod
    def merged_depends(cls) -> list[str]:
        """``depends`` of every class in the MRO, bases first, without repeats."""
        names: list[str] = []
        for klass in reversed(cls.__mro__):
            declared = vars(klass).get("depends", ())
            for name in [declared] if isinstance(declared, str) else declared:
                if name not in names:
                    names.append(name)
        return names

    def __repr__(self):
        return f"<{type(self).__name__} item={self.item!r:.60}>"


registry.base_class = Pipe
