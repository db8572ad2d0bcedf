"""Chunks of a distributed run: items encoded as JSON payloads, and decoded again.

A payload is ``{"content_type": id, "pks": [...], "queryset": bool}`` for model
instances of one type, ``{"values": [...]}`` for JSON values, and ``{"refs": [...]}``
(``["model", content type id, pk]`` or ``["value", value]`` each) for a mix.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from typing import Any

from django.db.models import Model, QuerySet
from django.db.models.query import ModelIterable

from .exceptions import ItemNotSerializable
from .sources import keyset_pages

__all__ = ["decode_chunk", "encode_chunks", "json_copy", "payload_size", "payload_values"]


def json_copy(value: Any) -> Any:
    """``value`` after a JSON round trip; TypeError or ValueError if it is not JSON."""
    return json.loads(json.dumps(value))


def _pk_json(pk: Any) -> Any:
    return pk if isinstance(pk, (int, str)) else str(pk)


def _content_type_id(model: type[Model]) -> int:
    from django.contrib.contenttypes.models import ContentType

    return ContentType.objects.get_for_model(model, for_concrete_model=False).pk


def _encode_value(position: int, item: Any) -> Any:
    if isinstance(item, Model):
        raise ItemNotSerializable(
            f"Item {position} ({item!r:.80}) cannot be sent to Celery: it is an unsaved "
            f"{type(item).__name__} (save it first, or send a JSON value)."
        )
    try:
        json.dumps(item)
    except (TypeError, ValueError) as exc:
        raise ItemNotSerializable(
            f"Item {position} ({item!r:.80}) cannot be sent to Celery: it is neither a "
            f"saved model instance nor JSON-encodable ({exc})."
        ) from None
    return item


def _encode_list(items: list, first: int) -> dict:
    """The chunk payload of a list of items (position ``first`` is the first one's)."""
    refs = []
    for position, item in enumerate(items, first):
        if isinstance(item, Model) and item.pk is not None:
            refs.append(["model", _content_type_id(type(item)), _pk_json(item.pk)])
        else:
            refs.append(["value", _encode_value(position, item)])
    kinds = {ref[0] for ref in refs}
    if kinds == {"value"}:
        return {"values": [ref[1] for ref in refs]}
    if kinds == {"model"} and len({ref[1] for ref in refs}) == 1:
        return {"content_type": refs[0][1], "pks": [ref[2] for ref in refs], "queryset": False}
    return {"refs": refs}


def _queryset_pks(queryset: QuerySet, page: int) -> Iterator[Any]:
    """The primary keys of ``queryset`` in pk order, read by keyset pages of ``page``."""
    return keyset_pages(queryset.values_list("pk", flat=True), page, key=lambda pk: pk)


def encode_chunks(items: Any, size: int, page: int = 2000) -> Iterator[dict]:
    """The chunk payloads of ``items``, ``size`` items each, lazily.

    A QuerySet of model instances is read as primary keys by keyset pages, never all
    at once; other items are encoded one by one, and an item that is neither a saved
    model instance nor JSON-encodable raises :class:`ItemNotSerializable`.
    """
    if isinstance(items, QuerySet) and items._iterable_class is ModelIterable:
        content_type = _content_type_id(items.model)
        pks = _queryset_pks(items, max(page, size))
        while batch := list(itertools.islice(pks, size)):
            yield {"content_type": content_type, "pks": [_pk_json(pk) for pk in batch],
                   "queryset": True}
        return
    iterator = iter(items)
    position = 0
    while batch := list(itertools.islice(iterator, size)):
        yield _encode_list(batch, position)
        position += len(batch)


def decode_chunk(payload: dict, using: str) -> Any:
    """The items of a chunk payload: a QuerySet, or a list (missing rows left out)."""
    from django.contrib.contenttypes.models import ContentType

    def model(content_type_id):
        return ContentType.objects.db_manager(using).get_for_id(content_type_id).model_class()

    if "values" in payload:
        return list(payload["values"])
    if "pks" in payload:
        queryset = model(payload["content_type"])._default_manager.using(using)
        queryset = queryset.filter(pk__in=payload["pks"]).order_by("pk")
        if payload.get("queryset"):
            return queryset
        found = {_pk_json(obj.pk): obj for obj in queryset}
        return [found[pk] for pk in payload["pks"] if pk in found]
    wanted: dict[int, list] = {}
    for ref in payload["refs"]:
        if ref[0] == "model":
            wanted.setdefault(ref[1], []).append(ref[2])
    found = {
        (content_type_id, _pk_json(obj.pk)): obj
        for content_type_id, pks in wanted.items()
        for obj in model(content_type_id)._default_manager.using(using).filter(pk__in=pks)
    }
    items = []
    for ref in payload["refs"]:
        if ref[0] == "value":
            items.append(ref[1])
        elif (ref[1], ref[2]) in found:
            items.append(found[(ref[1], ref[2])])
    return items


def payload_size(payload: dict) -> int:
    """How many items a payload holds."""
    return len(payload.get("pks") or payload.get("values") or payload.get("refs") or ())


def payload_values(payload: dict) -> list:
    """The items of a payload as JSON, without reading the database (for error rows)."""
    if "values" in payload:
        return payload["values"]
    if "pks" in payload:
        return [{"content_type": payload["content_type"], "pk": pk} for pk in payload["pks"]]
    return [ref[1:] for ref in payload["refs"]]
