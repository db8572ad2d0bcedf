"""Chunks of a distributed run: items encoded as JSON payloads, and decoded again.

A payload is ``{"model": label, "pks": [...], "queryset": bool}`` for model instances
of one class (``label`` as ``app_label.ModelName``: the class they are loaded as,
proxies kept), ``{"values": [...]}`` for JSON values, ``{"records": [[key, fields],
...]}`` for keyed records (:mod:`datapipe.sources`), and ``{"refs": [...]}``
(``["model", label, pk]``, ``["value", value]``, ``["record", key, fields]`` or
``["unreadable", line]`` each) for a mix. Primary keys are
written by :func:`datapipe.identity.pk_json`.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Iterator
from typing import Any

from django.apps import apps
from django.db.models import Model, QuerySet
from django.db.models.query import ModelIterable

from ..errors.text import readable
from ..exceptions import ItemNotSerializable
from ..identity import pk_json
from ..items import keyset_pages
from ..sources.records import Record, Unreadable

__all__ = [
    "decode_chunk", "encode_chunks", "json_copy", "json_problem", "payload_size", "payload_values",
]


def json_copy(value: Any) -> Any:
    """``value`` after a JSON round trip; TypeError or ValueError if it is not JSON."""
    return json.loads(json.dumps(value))


def _label(model: type[Model]) -> str:
    return model._meta.label


_SURROGATE = re.compile("[\ud800-\udfff]")


def json_problem(value: Any) -> str | None:
    """What keeps ``value`` from coming back equal from JSON stored in any database, or
    None when nothing does.

    That is: None, booleans, integers, finite floats, strings without NUL (refused by
    PostgreSQL) or lone surrogates (refused by every encoder), and lists and dicts with
    string keys of those. NaN and Infinity are not JSON; a tuple comes back a list; a
    dict's key 1 comes back ``"1"``.
    """
    try:
        return _problem(value)
    except RecursionError:
        return "values nested too deeply"


def _problem(value: Any) -> str | None:
    if value is None or isinstance(value, (bool, int)):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{value!r} (NaN and Infinity are not JSON)"
    if isinstance(value, str):
        if "\x00" in value:
            return "a NUL character in a string"
        if _SURROGATE.search(value):
            return "a lone surrogate in a string (text decoded with surrogateescape?)"
        return None
    if isinstance(value, list):
        return next((problem for item in value if (problem := _problem(item))), None)
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"a dict key that is not a string ({type(key).__name__} {key!r:.40})"
            if problem := _problem(key) or _problem(item):
                return problem
        return None
    if isinstance(value, tuple):
        return "a tuple (it would come back as a list)"
    return f"a value of type {type(value).__name__} (not JSON)"


def _encode_value(position: int, item: Any) -> Any:
    shown = readable(lambda: f"{item!r:.80}", "repr")
    if isinstance(item, Model):
        raise ItemNotSerializable(
            f"Item {position} ({shown}) cannot be sent to Celery: it is an unsaved "
            f"{type(item).__name__} (save it first, or send a JSON value)."
        )
    problem = json_problem(item)
    if problem is not None:
        raise ItemNotSerializable(
            f"Item {position} ({shown}) cannot be sent to Celery: it is neither a saved "
            f"model instance nor a value that comes back equal from JSON: it holds {problem}."
        )
    return item


def _encode_list(items: list, first: int) -> dict:
    """The chunk payload of a list of items (position ``first`` is the first one's)."""
    refs = []
    for position, item in enumerate(items, first):
        if isinstance(item, Model) and item.pk is not None:
            refs.append(["model", _label(type(item)), pk_json(item.pk)])
        elif isinstance(item, Record) and item.key is not None:
            refs.append(["record", *_encode_value(position, item.as_json())])
        elif isinstance(item, Unreadable):
            refs.append(["unreadable", _encode_value(position, item.as_json())])
        else:
            refs.append(["value", _encode_value(position, item)])
    kinds = {ref[0] for ref in refs}
    if kinds == {"value"}:
        return {"values": [ref[1] for ref in refs]}
    if kinds == {"record"}:
        return {"records": [ref[1:] for ref in refs]}
    if kinds == {"model"} and len({ref[1] for ref in refs}) == 1:
        return {"model": refs[0][1], "pks": [ref[2] for ref in refs], "queryset": False}
    return {"refs": refs}


def encode_chunks(items: Any, size: int, page: int = 2000) -> Iterator[dict]:
    """The chunk payloads of ``items``, ``size`` items each, lazily.

    A QuerySet of model instances is read as primary keys by keyset pages, never all
    at once; other items are encoded one by one, and an item that is neither a saved
    model instance nor JSON-encodable raises :class:`ItemNotSerializable`.
    """
    if isinstance(items, QuerySet) and items._iterable_class is ModelIterable:
        label = _label(items.model)
        pks = keyset_pages(items.values_list("pk", flat=True), max(page, size), key=lambda pk: pk)
        while batch := list(itertools.islice(pks, size)):
            yield {"model": label, "pks": [pk_json(pk) for pk in batch], "queryset": True}
        return
    iterator = iter(items)
    position = 0
    while batch := list(itertools.islice(iterator, size)):
        yield _encode_list(batch, position)
        position += len(batch)


def _manager(label: str, using: str):
    return apps.get_model(label)._default_manager.using(using)


def decode_chunk(payload: dict, using: str) -> Any:
    """The items of a chunk payload: a QuerySet, or a list (missing rows left out)."""
    if "values" in payload:
        return list(payload["values"])
    if "records" in payload:
        return [Record.from_json(value) for value in payload["records"]]
    if "pks" in payload:
        queryset = _manager(payload["model"], using).filter(pk__in=payload["pks"]).order_by("pk")
        if payload.get("queryset"):
            return queryset
        found = {pk_json(obj.pk): obj for obj in queryset}
        return [found[pk] for pk in payload["pks"] if pk in found]
    wanted: dict[str, list] = {}
    for ref in payload["refs"]:
        if ref[0] == "model":
            wanted.setdefault(ref[1], []).append(ref[2])
    found = {
        (label, pk_json(obj.pk)): obj
        for label, pks in wanted.items()
        for obj in _manager(label, using).filter(pk__in=pks)
    }
    items = []
    for ref in payload["refs"]:
        if ref[0] in _DECODE:
            items.append(_DECODE[ref[0]](ref))
        elif (ref[1], ref[2]) in found:
            items.append(found[(ref[1], ref[2])])
    return items


_DECODE = {
    "value": lambda ref: ref[1],
    "record": lambda ref: Record.from_json(ref[1:]),
    "unreadable": lambda ref: Unreadable.from_json(ref[1]),
}


def payload_size(payload: dict) -> int:
    """How many items a payload holds."""
    return len(payload.get("pks") or payload.get("values") or payload.get("records")
               or payload.get("refs") or ())


def payload_values(payload: dict) -> list:
    """The items of a payload as JSON (keyed records as records, so that their error rows
    name their keys), without reading the database (for error rows)."""
    if "values" in payload:
        return payload["values"]
    if "records" in payload:
        return [Record.from_json(value) for value in payload["records"]]
    if "pks" in payload:
        return [{"model": payload["model"], "pk": pk} for pk in payload["pks"]]
    return [ref[1:] for ref in payload["refs"]]
