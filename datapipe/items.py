"""Items in: QuerySets read by keyset pages, lists and other iterables; checked first."""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from operator import attrgetter
from typing import Any

from django.db.models import Model, QuerySet
from django.db.models.query import ModelIterable

from .exceptions import InvalidItems

__all__ = [
    "check_items", "default_pipeline_name", "distinct_rows", "iterate", "keyset_pages",
]


def check_items(items: Any, where: str) -> None:
    """Raise :class:`InvalidItems` unless ``items`` is a QuerySet or an iterable of items."""
    if isinstance(items, QuerySet):
        return
    problem = None
    if items is None:
        problem = "None"
    elif isinstance(items, (str, bytes)):
        problem = f"a {type(items).__name__} (a single value, iterated character by character)"
    elif isinstance(items, Mapping):
        problem = "a mapping (pass a list of its values or items)"
    elif isinstance(items, Model):
        problem = f"a single {type(items).__name__} instance (pass a list or a QuerySet)"
    elif not isinstance(items, Iterable):
        problem = f"a {type(items).__name__}, which is not iterable"
    if problem:
        raise InvalidItems(f"{where} must be a QuerySet or an iterable of items, not {problem}.")


def iterate(items: Iterable[Any], chunksize: int) -> Iterator[Any]:
    """Yield the items; a QuerySet of model instances is read by :func:`keyset_pages`.

    ``values()`` QuerySets are streamed with ``iterator()``.
    """
    if not isinstance(items, QuerySet):
        return iter(items)
    if items._iterable_class is not ModelIterable:
        return items.iterator(chunk_size=chunksize)
    return keyset_pages(items, chunksize)


def distinct_rows(items: Any) -> bool:
    """Whether :func:`iterate` yields each row of ``items`` at most once: a QuerySet of
    model instances read by keyset pages, without a join that could repeat a row
    (unless ``distinct()``)."""
    if not isinstance(items, QuerySet) or items._iterable_class is not ModelIterable:
        return False
    query = items.query
    if query.is_sliced or query.combinator:
        return False
    return query.distinct or len(query.alias_map) <= 1


def keyset_pages(
    queryset: QuerySet, chunksize: int, key: Callable[[Any], Any] = attrgetter("pk")
) -> Iterator[Any]:
    """Yield the rows of ``queryset`` in primary-key order, by keyset pages.

    Keyset pages (``pk > last ORDER BY pk LIMIT chunksize``) keep memory flat whatever
    the number of rows, and each page sees rows as the current transaction does.
    ``key`` gives a row's pk (for ``values_list("pk", flat=True)``: the row itself).
    Sliced and combined (union) QuerySets cannot be filtered; they are streamed.
    """
    query = queryset.query
    if query.is_sliced or query.combinator:
        yield from queryset.iterator(chunk_size=chunksize)
        return
    ordered = queryset.order_by("pk")
    page = list(ordered[:chunksize])
    while page:
        yield from page
        if len(page) < chunksize:
            return
        page = list(ordered.filter(pk__gt=key(page[-1]))[:chunksize])


def default_pipeline_name(items: Any) -> tuple[str, Any]:
    """The pipeline name from ``get_default_pipe_name()``, and the items to use.

    The QuerySet (or its model) is asked first, else the first item; a generator is
    peeked at and given back whole. A model that defines it as an instance method is
    asked through the QuerySet's first row.
    """
    owner = None
    if isinstance(items, QuerySet):
        owner = items if hasattr(items, "get_default_pipe_name") else items.model
        if owner is items.model and _instance_method(owner):
            owner = items.order_by("pk").first()
            if owner is None:
                raise InvalidItems(
                    "run() was given no pipeline name and an empty QuerySet, whose model "
                    "names its pipeline per instance (get_default_pipe_name(self)): pass "
                    "the name."
                )
    else:
        check_items(items, "run()'s items")
        if not isinstance(items, Sequence):
            iterator = iter(items)
            first = next(iterator, None)
            items = itertools.chain([] if first is None else [first], iterator)
            owner = first
        elif items:
            owner = items[0]
    getter = getattr(owner, "get_default_pipe_name", None)
    if getter is None:
        raise InvalidItems(
            "run() was given no pipeline name and the items do not name one: pass the "
            "name, or define get_default_pipe_name() on the QuerySet or the items' class."
        )
    return getter(), items


def _instance_method(model: type[Model]) -> bool:
    """Whether ``model.get_default_pipe_name`` is a plain function (needs an instance),
    not a classmethod or staticmethod."""
    return inspect.isfunction(inspect.getattr_static(model, "get_default_pipe_name", None))
