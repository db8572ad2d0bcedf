"""The registry of pipelines: ``@pipeline``, composition, the depends/trigger graph.

Registering on purpose versus by mistake:

* Several **different** classes registered under one name compose into one pipeline,
  in registration order, the last registered outermost: as ``type(name, (last, ...,
  first), {})`` would.
* The **same** class registered again under the same name (a module imported twice,
  or reloaded) replaces its earlier registration instead of composing with itself; a
  class is recognised by its module and qualified name.
"""

from __future__ import annotations

from contextlib import contextmanager

from .exceptions import PipelineCycle, PipelineDefinitionError, PipelineNotFound

__all__ = ["pipeline", "registry", "Registry"]


def _class_id(cls):
    return (cls.__module__, cls.__qualname__)


class Registry:
    """Maps pipeline names to composed classes and knows the graph between them."""

    #: The class every pipeline must derive from; set by :mod:`datapipe.pipe` (which
    #: imports this module, so that this module need not import it).
    base_class: type = object

    def __init__(self):
        self._classes: dict[str, list[type]] = {}
        self._triggers: dict[str, list[str]] = {}  # source name -> triggered names
        self._composed: dict[str, type] = {}
        self._schedules: dict[str, object] = {}  # name -> Celery schedule
        self._ready = False

    # Registration ------------------------------------------------------------------

    def register(self, name: str, cls: type, triggers=(), schedule=None) -> None:
        """Register ``cls`` under ``name``, triggered after each run of ``triggers``,
        run on ``schedule`` (see :mod:`datapipe.schedules`) when given."""
        if not isinstance(name, str) or not name.strip() or name != name.strip():
            raise PipelineDefinitionError(f"A pipeline name must be a non-empty string: {name!r}")
        if not (isinstance(cls, type) and issubclass(cls, self.base_class)):
            raise PipelineDefinitionError(
                f"@pipeline({name!r}) decorates Pipe subclasses, not {cls!r}"
            )
        classes = [c for c in self._classes.get(name, []) if _class_id(c) != _class_id(cls)]
        classes.append(cls)
        self._compose(name, classes)  # raises before anything is changed
        if schedule is not None:
            from .schedules import as_schedule  # celery's, imported when a schedule is used

            schedule = as_schedule(schedule, name)
        with self._undone_on_error():
            self._classes[name] = classes
            if schedule is not None:
                self._schedules[name] = schedule
            for source in triggers:
                targets = self._triggers.setdefault(source, [])
                if name not in targets:
                    targets.append(name)
            if self._ready:
                self.check_cycles()

    def unregister(self, name: str) -> None:
        """Forget the pipeline ``name`` and the triggers it declared."""
        self._classes.pop(name, None)
        self._composed.pop(name, None)
        self._schedules.pop(name, None)
        for targets in self._triggers.values():
            if name in targets:
                targets.remove(name)

    def _snapshot(self):
        return (
            {k: list(v) for k, v in self._classes.items()},
            {k: list(v) for k, v in self._triggers.items()},
            dict(self._schedules),
        )

    def _restore(self, snapshot):
        self._classes, self._triggers, self._schedules = snapshot
        self._composed.clear()

    @contextmanager
    def _undone_on_error(self):
        snapshot = self._snapshot()
        try:
            yield
        except BaseException:
            self._restore(snapshot)
            raise
        self._composed.clear()

    @contextmanager
    def isolated(self):
        """Restore the registry as it was when the block exits (for tests)."""
        snapshot = self._snapshot()
        try:
            yield self
        finally:
            self._restore(snapshot)

    @staticmethod
    def _compose(name, classes):
        if len(classes) == 1:
            return classes[0]
        bases = tuple(reversed(classes))
        try:
            return type(name, bases, {"__module__": classes[-1].__module__})
        except TypeError as exc:
            listed = ", ".join(c.__qualname__ for c in bases)
            raise PipelineDefinitionError(
                f"The classes registered as {name!r} ({listed}) cannot compose: {exc}"
            ) from exc

    # Lookups -----------------------------------------------------------------------

    def get(self, name: str) -> type:
        """The pipeline class registered as ``name``; raises :class:`PipelineNotFound`."""
        try:
            return self._composed[name]
        except KeyError:
            pass
        if name not in self._classes:
            raise PipelineNotFound(name, self._classes)
        composed = self._composed[name] = self._compose(name, self._classes[name])
        return composed

    def names(self) -> list[str]:
        """Registered pipeline names, sorted."""
        return sorted(self._classes)

    def __contains__(self, name):
        return name in self._classes

    def depends_of(self, name: str) -> list[str]:
        """Names the pipeline ``name`` depends on, merged across its base classes."""
        return self.get(name).merged_depends()

    def schedules(self) -> dict:
        """``{name: Celery schedule}`` of the pipelines declared with ``schedule=``."""
        self.autodiscover()
        return dict(self._schedules)

    def triggers_of(self, name: str) -> list[str]:
        """Names of the pipelines run on the results of each run of ``name``."""
        return list(self._triggers.get(name, ()))

    def triggered_by(self, name: str) -> list[str]:
        """Names of the pipelines whose runs trigger ``name``."""
        return [source for source, targets in self._triggers.items() if name in targets]

    # Start-up ----------------------------------------------------------------------

    def autodiscover(self) -> None:
        """Import the pipes module of every installed app; then check cycles on register."""
        from django.utils.module_loading import autodiscover_modules

        from . import conf

        autodiscover_modules(conf.get("PIPES_MODULE"))
        self._ready = True

    def edges(self) -> dict[str, list[str]]:
        """The graph: each name to the names that run because of it or before it."""
        graph: dict[str, list[str]] = {}
        for name in self._classes:
            graph.setdefault(name, []).extend(self.depends_of(name))
        for source, targets in self._triggers.items():
            graph.setdefault(source, []).extend(targets)
        return graph

    def check_cycles(self) -> None:
        """Raise :class:`PipelineCycle`, spelling the cycle out, if the graph has one."""
        graph = self.edges()
        done: set[str] = set()

        def visit(name, path):
            if name in path:
                raise PipelineCycle(path[path.index(name):] + [name])
            if name in done:
                return
            for following in graph.get(name, ()):
                visit(following, path + [name])
            done.add(name)

        for name in sorted(graph):
            visit(name, [])


registry = Registry()


def pipeline(name: str, *, trigger: str | None = None, triggers=(), schedule=None):
    """Class decorator registering a :class:`~datapipe.Pipe` subclass as pipeline ``name``.

    ``trigger`` (one name) or ``triggers`` (several) name pipelines after each run of
    which this one runs on their collected results, in its own transaction.
    ``schedule`` (a cron string, a timedelta or a Celery schedule): ``celery beat`` runs
    the pipeline over its ``source()`` on that timetable (see :mod:`datapipe.schedules`).
    """
    if isinstance(triggers, str):
        triggers = [triggers]
    sources = list(triggers) + ([trigger] if trigger else [])

    def decorate(cls):
        registry.register(name, cls, triggers=sources, schedule=schedule)
        return cls

    return decorate
