"""Bulk inserts through COPY on PostgreSQL, ``bulk_create`` elsewhere.

``bulk_create`` compiles one multi-row INSERT in Python, and at thousands of rows that
compilation costs more than the database's work. COPY streams the rows in one
statement instead. It returns no ids: :func:`insert_rows` serves rows nobody reads
back (reparse trackers); :func:`insert_objects` first takes the ids from the table's
sequence, in one query, so the saved objects get their primary keys as with
``bulk_create``. Other databases (and psycopg 2) get ``bulk_create``.
"""

from __future__ import annotations

import datetime
import decimal
import json
import math
import re
import uuid
from collections.abc import Iterable, Sequence
from contextlib import contextmanager, nullcontext
from typing import Any

from django.db import connections, models
from django.db.backends.utils import CursorDebugWrapper
from django.db.models import NOT_PROVIDED, JSONField, Model
from django.db.models.fields import AutoFieldMixin

__all__ = ["insert_objects", "insert_rows"]

# Values that PostgreSQL takes as they are: no field conversion needed.
_PLAIN = frozenset({str, int, float, bool, datetime.datetime, type(None)})


def insert_rows(
    model: type[Model], fields: Sequence[str], rows: Iterable[Sequence], using: str,
    same: dict[str, Any] | None = None,
) -> None:
    """Insert ``rows`` (values of ``fields``, as assigned to a model instance), each with
    the values of ``same`` (field name: value) too.

    The rows' primary keys are not read back; the fields' ``pre_save`` does not run
    (give ``auto_now`` fields their value).
    """
    same = same or {}
    connection = connections[using]
    if not _can_copy(connection):
        model._base_manager.using(using).bulk_create(
            model(**same, **dict(zip(fields, row, strict=True))) for row in rows
        )
        return
    model_fields = [model._meta.get_field(name) for name in (*same, *fields)]
    quote = connection.ops.quote_name
    sql = "COPY {} ({}) FROM STDIN".format(
        quote(model._meta.db_table), ", ".join(quote(field.column) for field in model_fields)
    )
    rows = rows if isinstance(rows, list) else list(rows)
    texts = [_text_converter(field) for field in model_fields]
    converters = [_copy_converter(field, connection) for field in model_fields]
    try:
        prefix = "".join(text(value) + "\t"
                         for text, value in zip(texts[:len(same)], same.values(), strict=True))
    except _NotText:
        prefix, rows = "", [(*same.values(), *row) for row in rows]
    else:
        texts = texts[len(same):]
    leading = list(same.values()) if prefix else []
    with connection.cursor() as cursor, _copy(cursor, sql) as copy:
        _write_rows(
            copy, rows,
            lambda row: prefix + "\t".join(
                [text(v) for text, v in zip(texts, row, strict=True)]) + "\n",
            lambda row: [convert(v) for convert, v in zip(
                converters, [*leading, *row], strict=True)],
        )


def insert_objects(model: type[Model], objs: Sequence[Model], using: str) -> None:
    """Save unsaved ``objs`` of ``model`` as ``bulk_create`` does: pks set, state saved.

    COPY applies to a model with its own table (no multi-table inheritance), a
    sequence-backed primary key left unset, and plain values (no expressions, no
    database defaults); anything else goes through ``bulk_create``.
    """
    connection = connections[using]
    fields = _copyable_fields(model, objs, connection)
    if fields is None:
        model._base_manager.using(using).bulk_create(objs)
        return
    _prepare_related(model, objs)
    quote = connection.ops.quote_name
    table, pk = model._meta.db_table, model._meta.pk
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT nextval(%s::regclass) FROM generate_series(1, %s)",
            [_sequence(cursor, quote(table), pk.column), len(objs)],
        )
        ids = [row[0] for row in cursor.fetchall()]
        sql = "COPY {} ({}) FROM STDIN".format(
            quote(table), ", ".join(quote(field.column) for field in fields)
        )
        for obj, pk_value in zip(objs, ids, strict=True):
            setattr(obj, pk.attname, pk_value)
        texts = [_object_text(field, connection) for field in fields]
        converters = [_object_converter(field, connection) for field in fields]
        with _copy(cursor, sql) as copy:
            _write_rows(
                copy, objs,
                lambda obj: "\t".join([text(obj) for text in texts]) + "\n",
                lambda obj: [convert(obj) for convert in converters],
            )
    for obj in objs:
        obj._state.adding = False
        obj._state.db = using


def _prepare_related(model: type[Model], objs: Sequence[Model]) -> None:
    """As ``bulk_create``: each object's foreign keys to objects saved since they were
    assigned take their keys, and one to an unsaved object raises ``ValueError``.

    Django's check visits every field of every object; an object whose cached related
    objects all have the key it holds already (``ResultItem(source=item)``) needs
    nothing, and is only looked at here.
    """
    meta = model._meta
    relations = [(field.cache_name, field.attname, field.target_field.attname)
                 for field in meta.concrete_fields if field.is_relation]
    if not relations and not meta.private_fields:
        return
    for obj in objs:
        cache = obj._state.fields_cache
        for cache_name, attname, target in relations:
            related = cache.get(cache_name)
            if related is None:
                continue
            value = getattr(obj, attname)
            if value is None or getattr(related, target) != value:
                break
        else:
            if not meta.private_fields:
                continue
        obj._prepare_related_fields_for_save(operation_name="bulk_create")


#: Rows formatted between two writes to COPY: the server parses a piece while the next
#: is formatted (a flush's 2,000 rows written at once made it wait for all of them).
PIECE = 250


def _write_rows(copy, rows: Sequence, line, adapted) -> None:
    """Write ``rows`` to ``copy``: ``line(row)`` is a row's text (:func:`_text`), written
    :data:`PIECE` rows at a time; from the first piece holding a value that is not plain
    text on, ``adapted(row)``'s values, which psycopg adapts (rows are independent:
    the two kinds may follow each other)."""
    for start in range(0, len(rows), PIECE):
        try:
            copy.write("".join([line(row) for row in rows[start:start + PIECE]]))
        except _NotText:
            for row in rows[start:]:
                copy.write_row(adapted(row))
            return


#: The sequence of each (database, table, column), asked once: ``pg_get_serial_sequence``
#: in the ``nextval`` query would run once per row, and cost six times the ``nextval``.
_sequences: dict[tuple, str] = {}


def _sequence(cursor, table: str, column: str) -> str:
    where = cursor.db.settings_dict
    key = (where["HOST"], where["PORT"], where["NAME"], table, column)
    name = _sequences.get(key)
    if name is None:
        cursor.execute("SELECT pg_get_serial_sequence(%s, %s)", [table, column])
        name = _sequences[key] = cursor.fetchone()[0]
    return name


# Django's own field classes whose conversion leaves values of these types unchanged.
_INTEGERS = (
    models.AutoField, models.BigAutoField, models.SmallAutoField, models.IntegerField,
    models.BigIntegerField, models.SmallIntegerField, models.PositiveIntegerField,
    models.PositiveBigIntegerField, models.PositiveSmallIntegerField,
)  # fmt: skip
UNCONVERTED = {
    models.CharField: (str,),
    models.TextField: (str,),
    models.BooleanField: (bool,),
    models.FloatField: (float, int),
    **{field_class: (int,) for field_class in _INTEGERS},
    models.UUIDField: (uuid.UUID,),  # PostgreSQL's own uuid type
}


def kept_types(field) -> tuple | None:
    """The value types that ``field``'s conversion for the database leaves as they are
    (None included), or None when every value goes through it (any field class but
    Django's own plain ones, and a foreign key to one)."""
    target = field.target_field if type(field) is models.ForeignKey else field
    if type(field) not in UNCONVERTED and target is field:
        return None
    return (*UNCONVERTED.get(type(target), ()), type(None))


def _object_converter(field, connection):
    """A function from an object to what COPY writes for ``field``.

    As ``bulk_create``: ``pre_save``, then ``get_db_prep_save``, except for values
    that a plain Django field would leave as they are (most values, at a fraction of
    the cost).
    """

    def prepared(obj):
        return field.get_db_prep_save(field.pre_save(obj, True), connection)

    kept, attname = kept_types(field), field.attname
    if kept is None:
        return prepared

    def convert(obj):
        value = getattr(obj, attname)
        return value if type(value) in kept else prepared(obj)

    return convert


@contextmanager
def _copy(cursor, sql: str):
    """``cursor.copy(sql)`` with Django's error classes, logged like a query when queries are."""
    logged = cursor.debug_sql(sql) if isinstance(cursor, CursorDebugWrapper) else nullcontext()
    with logged, cursor.db.wrap_database_errors, cursor.cursor.copy(sql) as copy:
        yield copy


def _copyable_fields(model, objs, connection) -> list | None:
    """The concrete fields to COPY, or None when COPY does not apply."""
    meta = model._meta
    if not _can_copy(connection) or meta.parents or not isinstance(meta.pk, AutoFieldMixin):
        return None
    fields = [field for field in meta.concrete_fields if not getattr(field, "generated", False)]
    if any(getattr(field, "db_default", NOT_PROVIDED) is not NOT_PROVIDED for field in fields):
        return None
    attnames = [field.attname for field in fields]
    for obj in objs:
        if obj.pk is not None:
            return None
        values = obj.__dict__
        for name in attnames:
            value = values.get(name)
            if type(value) not in _PLAIN and hasattr(value, "resolve_expression"):
                return None
    return fields


def _copy_converter(field, connection):
    """A function from a field's value to what COPY writes for it."""
    if isinstance(field, JSONField):
        # As text, parsed by the server: cheaper than an adapter object per row.
        return lambda value: json.dumps(value, cls=field.encoder)

    def convert(value):
        if type(value) in _PLAIN:
            return value
        return field.get_db_prep_save(value, connection)

    return convert


class _NotText(Exception):
    """A value :func:`_text` does not write (psycopg adapts the rows then)."""


# COPY's text format: a backslash escapes the separators and itself.
_ESCAPES = str.maketrans({"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"})


def _escaped(text: str) -> str:
    if "\\" in text or "\t" in text or "\n" in text or "\r" in text:
        return text.translate(_ESCAPES)
    return text


def _text(value) -> str:
    """A plain value in COPY's text format; :class:`_NotText` for other values."""
    kind = type(value)
    if kind is str:
        return _escaped(value)
    if kind is int:
        return str(value)
    if value is None:
        return "\\N"
    if kind is float and math.isfinite(value):
        return repr(value)
    if kind is bool:
        return "t" if value else "f"
    if kind is datetime.datetime and value.tzinfo is not None:
        return value.isoformat()
    if kind is datetime.date or kind is uuid.UUID or (
            kind is decimal.Decimal and value.is_finite()):
        return str(value)
    raise _NotText


#: Labels of trackers' outputs written as they are in JSON (no character to escape).
_PLAIN_KEY = re.compile(r"[\w.]+", re.ASCII)


_plain_keys: set[str] = set()  # the labels seen (bounded: keys of users' JSON pass here too)


def _plain_key(key) -> bool:
    if key in _plain_keys:
        return True
    if type(key) is str and _PLAIN_KEY.fullmatch(key):
        if len(_plain_keys) < 1000:
            _plain_keys.add(key)
        return True
    return False


def _json_text(value, encoder) -> str:
    """``value`` as JSON text in COPY's text format. ``{label: [int, ...]}`` (trackers'
    outputs) is written without ``json.dumps``, which makes an encoder per call: three
    times the cost of the text itself."""
    if encoder is None and type(value) is dict:
        parts = []
        for key, items in value.items():
            if type(items) is not list or not _plain_key(key):
                break
            if not (len(items) == 1 and type(items[0]) is int) and not all(
                    type(item) is int for item in items):
                break
            parts.append(f'"{key}": [{", ".join(map(str, items))}]')
        else:
            return "{" + ", ".join(parts) + "}"
    return _escaped(json.dumps(value, cls=encoder))


def _text_converter(field):
    """A function from a value of ``field`` (as assigned to a model instance) to its
    COPY text (:func:`_text`; JSON for a JSONField). The text of one value object
    repeated across rows (the run's name, its timestamp) is made once."""
    json_field = isinstance(field, JSONField)
    last = [_NotText, ""]

    def text(value):
        if value is last[0]:
            return last[1]
        if json_field and value is not None:
            result = _json_text(value, field.encoder)
        else:
            result = _text(value)
        last[0], last[1] = value, result
        return result

    return text


def _object_text(field, connection):
    """A function from an object to the COPY text of ``field``: its value converted as
    :func:`_object_converter` does, then :func:`_text` (JSON for a JSONField)."""
    if isinstance(field, JSONField):
        attname, encoder = field.attname, field.encoder
        return lambda obj: (
            "\\N" if (value := getattr(obj, attname)) is None else _json_text(value, encoder))
    convert = _object_converter(field, connection)
    kept, attname = kept_types(field), field.attname
    if kept is None:
        return lambda obj: _text(convert(obj))

    def text(obj):  # a plain value without the converter's call
        value = getattr(obj, attname)
        return _text(value if type(value) in kept else convert(obj))

    return text


def _can_copy(connection) -> bool:
    if connection.vendor != "postgresql":
        return False
    from django.db.backends.postgresql.psycopg_any import is_psycopg3

    return is_psycopg3
