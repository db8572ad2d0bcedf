"""Item identity: one key per item, its JSON form, and the database it belongs to.

Tracking (reparse), error rows, Celery chunks and reprocessing all name items through
this module, under one rule:

* A **model item** (a saved model instance) is the content type of its *concrete*
  model and its primary key as text. A proxy and its concrete model name the same row,
  so they share trackers and error rows. Content types are read on the database of the
  run.
* A **keyed record** (a :class:`~datapipe.sources.Record` read with ``key=``) is its
  key as text: no content type, ``item_id`` the key, key ``"k:<key>"``. Trackers, error
  rows and chunks name it so, whatever file it was read from.
* Any **other item** is a JSON value, named by a hash of its canonical JSON
  (``"v:<sha1>"``).

The key text of an error row is ``"<content type id>:<pk>"``, ``"k:<key>"`` or
``"v:<sha1>"``.
A chunk refers to model items by model label (the class to load them as, proxies
kept) and primary keys in JSON (:func:`pk_json`).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, NamedTuple

from django.db import DEFAULT_DB_ALIAS, router
from django.db.models import Model, QuerySet

from .sources.records import Record, key_text

__all__ = [
    "Identity", "content_type_id", "database_for", "identity", "json_value", "model_identity",
    "pk_json", "record_identity", "tracked_identity", "value_key",
]


class Identity(NamedTuple):
    """Who an item is: ``content_type_id`` and ``item_id`` (pk text) for model items;
    ``content_type_id`` None and ``item_id`` the key text for keyed records;
    both None for values, named by ``key`` alone."""

    content_type_id: int | None
    item_id: str | None
    key: str

    @classmethod
    def of_row(cls, content_type_id: int, pk: Any) -> Identity:
        """The identity of the row ``pk`` of the model whose content type is given."""
        item_id = str(pk)
        return cls(content_type_id, item_id, f"{content_type_id}:{item_id}")

    @classmethod
    def of_record(cls, key: Any) -> Identity:
        """The identity of the keyed record whose key (or key text) is ``key``."""
        text = key_text(key)
        return cls(None, text, "k:" + text)

    @property
    def is_model(self) -> bool:
        """Whether the item is a saved model instance."""
        return self.content_type_id is not None


#: ``ContentType.objects.db_manager(using)`` per database: making one copies the manager,
#: which cost more than the look-up itself, once per item. The copies share the cache
#: of ``ContentType.objects`` (``clear_cache()`` empties theirs too).
_managers: dict[str, Any] = {}


def content_type_id(model: type[Model], using: str = DEFAULT_DB_ALIAS) -> int:
    """The id of the content type of ``model``'s concrete model, on ``using``."""
    manager = _managers.get(using)
    if manager is None:
        from django.contrib.contenttypes.models import ContentType

        manager = _managers[using] = ContentType.objects.db_manager(using)
    return manager.get_for_model(model).pk


def pk_json(pk: Any) -> Any:
    """A primary key as JSON: ints and strings as they are, anything else (UUID) as text."""
    return pk if isinstance(pk, (int, str)) and not isinstance(pk, bool) else str(pk)


def model_identity(item: Any, using: str = DEFAULT_DB_ALIAS) -> Identity | None:
    """The identity of a saved model instance, else None."""
    if isinstance(item, Model) and item.pk is not None:
        return Identity.of_row(content_type_id(type(item), using), item.pk)
    return None


def record_identity(item: Any) -> Identity | None:
    """The identity of a keyed record, else None."""
    if isinstance(item, Record) and item.key is not None:
        return Identity.of_record(item.key)
    return None


def tracked_identity(item: Any, using: str = DEFAULT_DB_ALIAS) -> Identity | None:
    """The identity under which an item's outputs are tracked for reparse: that of a
    saved model instance or of a keyed record; None for any other item (untracked)."""
    found = model_identity(item, using)
    return found if found is not None else record_identity(item)


def value_key(value: Any) -> str:
    """The key of a non-model item: a hash of its canonical JSON (or of its repr)."""
    try:
        text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    except Exception:
        try:
            text = repr(value)
        except Exception:  # a __repr__ that raises: this object alone
            text = f"<{type(value).__qualname__} at {id(value):#x}>"
    return "v:" + hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()


def identity(item: Any, using: str = DEFAULT_DB_ALIAS) -> Identity:
    """The identity of any item (see the module docstring)."""
    found = tracked_identity(item, using)
    return found if found is not None else Identity(None, None, value_key(item))


def json_value(value: Any) -> Any:
    """``value`` after a JSON round trip, or None if it is not JSON-encodable."""
    try:
        return json.loads(json.dumps(value))
    except Exception:  # not JSON, nested too deeply, or its own code raises
        return None


def database_for(items: Any, using: str | None = None) -> str:
    """The database a run over ``items`` reads and writes: ``using`` when given, else
    the QuerySet's own (``.using()``) or the router's choice for writing its model,
    else the default database."""
    if using is not None:
        return using
    if isinstance(items, QuerySet):
        return items._db or router.db_for_write(items.model)
    return DEFAULT_DB_ALIAS
