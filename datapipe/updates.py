"""Buffered updates (``Pipe.add_to_update``): one UPDATE per model and fields at a flush.

On PostgreSQL (psycopg 3) each group of rows is written by one statement, whose values
travel as one array per column, whatever the number of rows::

    UPDATE "table" SET "a" = datapipe_rows.c0, "b" = datapipe_rows.c1
    FROM (SELECT unnest(%b::bigint[]) AS pk, unnest(%b::varchar[]) AS c0,
                 unnest(%b::jsonb[]) AS c1) AS datapipe_rows
    WHERE "table"."id" = datapipe_rows.pk

The arrays are cast to the column types without their length (``varchar[]``, not
``varchar(100)[]``): an explicit cast cuts a long string short, where assigning it to
the column raises, as ``save()`` does. A group with an expression for a value (``F()``),
or a field whose column type is not one of :data:`ARRAY_TYPES`, goes through
``bulk_update``, as every group does on other databases.

As with ``bulk_update``, values are read from the objects at the flush, and ``pre_save``
does not run: an ``auto_now`` field keeps the value the object has. A row that no longer
exists is not an error: the UPDATE matches nothing.
"""

from __future__ import annotations

import datetime
import functools
import json
import re
from collections.abc import Iterable, Sequence
from contextlib import nullcontext

from django.core.exceptions import FieldDoesNotExist
from django.db import connections, models
from django.db.backends.utils import CursorDebugWrapper
from django.db.models import Model

from .bulk import kept_types
from .exceptions import InvalidOutput

__all__ = ["ARRAY_TYPES", "apply_updates", "checked_fields", "update_objects"]

#: Column types whose values go in an array parameter as psycopg adapts them.
ARRAY_TYPES = frozenset({
    "smallint", "integer", "bigint", "boolean", "real", "double precision", "numeric",
    "varchar", "bpchar", "text", "jsonb", "uuid", "date", "time without time zone",
    "timestamp with time zone", "timestamp", "interval", "bytea",
})  # fmt: skip


# varchar(100), char(2), numeric(10, 2): the type without its length or precision.
_MODIFIED = re.compile(r"(varchar|char|character varying|character|numeric|decimal)\s*\(.*\)")
_UNMODIFIED = {
    "char": "bpchar",
    "character": "bpchar",
    "character varying": "varchar",
    "decimal": "numeric",
}


def checked_fields(obj: Model, fields: Sequence[str]) -> tuple[str, ...]:
    """The names of ``fields``, each a concrete field of ``obj``'s model that is neither
    its primary key nor many-to-many (a foreign key by its name or by its ``_id``
    attname); raises :class:`InvalidOutput` otherwise."""
    names = tuple(fields) if isinstance(fields, (list, tuple)) else ()
    if names and _hashable(names):
        return _checked(obj._meta.concrete_model, names)
    raise InvalidOutput(
        f"add_to_update() needs fields=[...], a non-empty list of names of fields of "
        f"{obj._meta.label} to update; got {fields!r:.80}."
    )


def _hashable(value) -> bool:
    try:
        hash(value)
    except TypeError:  # a list among the names: not a name
        return False
    return True


@functools.lru_cache(maxsize=256)  # a pipe names the same fields for every item
def _checked(model: type[Model], fields: tuple[str, ...]) -> tuple[str, ...]:
    meta = model._meta
    names: list[str] = []
    for name in fields:
        try:
            field = meta.get_field(name)
        except FieldDoesNotExist:
            raise InvalidOutput(
                f"add_to_update(): {meta.label} has no field {name!r:.80}."
            ) from None
        if getattr(field, "primary_key", False):
            raise InvalidOutput(
                f"add_to_update(): {name!r} is the primary key of {meta.label}; "
                "a row's primary key is not updated."
            )
        if not field.concrete or field.many_to_many or getattr(field, "generated", False):
            raise InvalidOutput(
                f"add_to_update(): {name!r} of {meta.label} is not a column of its table "
                "(a many-to-many, reverse or generated field): name a concrete field."
            )
        if field.name not in names:
            names.append(field.name)
    return tuple(names)


def apply_updates(updates: Iterable[tuple[Model, tuple[str, ...]]], using: str) -> None:
    """Write ``updates`` (an object, the names of its fields to write), the last update of
    a row's field winning: each row and field is written once, so the order of the
    statements does not matter (PostgreSQL's ``UPDATE ... FROM`` would pick one of two
    values for one row at random)."""
    rows: dict[tuple, list] = {}
    for update in updates:
        obj = update[0]
        rows.setdefault((obj._meta.concrete_model, obj.pk), []).append(update)
    # (model, fields) -> the objects whose values they take, in order of first appearance.
    groups: dict[tuple, list[Model]] = {}
    for (model, _), row in rows.items():
        for obj, names in row if len(row) == 1 else _merged(row):
            groups.setdefault((model, names), []).append(obj)
    for (model, names), objs in groups.items():
        update_objects(model, objs, names, using)


def _merged(row: list) -> list[tuple[Model, tuple[str, ...]]]:
    """The updates of one row as (object, names), each field taken from its last update."""
    latest: dict[str, Model] = {}
    for obj, names in row:
        for name in names:
            latest[name] = obj
    fields_of: dict[int, tuple[Model, list[str]]] = {}
    for name, obj in latest.items():
        fields_of.setdefault(id(obj), (obj, []))[1].append(name)
    return [(obj, tuple(names)) for obj, names in fields_of.values()]


def update_objects(
    model: type[Model], objs: Sequence[Model], names: Sequence[str], using: str
) -> None:
    """Write the fields ``names`` of ``objs`` (saved instances of ``model``, one per row)."""
    fields = [model._meta.get_field(name) for name in names]
    if any(field.is_relation for field in fields):
        for obj in objs:  # foreign keys to objects saved since they were assigned
            obj._prepare_related_fields_for_save(operation_name="bulk_update", fields=fields)
    connection = connections[using]
    statement = _array_update(model, objs, fields, connection)
    if statement is None:
        model._base_manager.using(using).bulk_update(objs, names)
        return
    _execute_binary(connection, *statement)


def _execute_binary(connection, sql: str, params: list) -> None:
    """Run ``sql`` with its parameters sent in binary (``%b``): a string goes as its bytes.

    Django's cursor binds parameters on the client, in text, where psycopg escapes
    each quote of each element of an array in Python: twice the time of the whole
    statement on a JSON column. The statement is logged like a query when queries are,
    and never prepared (poolers in transaction mode do not keep prepared statements).
    """
    from psycopg import Cursor

    with connection.cursor() as cursor:
        logged = cursor.debug_sql(sql) if isinstance(cursor, CursorDebugWrapper) else nullcontext()
        with logged, connection.wrap_database_errors, Cursor(connection.connection) as binary:
            binary.execute(sql, params, prepare=False)


def _array_update(model, objs, fields, connection) -> tuple[str, list] | None:
    """The ``UPDATE ... FROM (SELECT unnest(...))`` statement and its arrays, or None when
    it does not apply (not PostgreSQL with psycopg 3, a field of a parent table, a
    column type not in :data:`ARRAY_TYPES`, an expression for a value)."""
    meta = model._meta
    if not _can_use_arrays(connection) or any(f not in meta.local_concrete_fields for f in fields):
        return None
    pk = meta.pk
    types = [_array_type(field, connection) for field in (pk, *fields)]
    if None in types:
        return None
    columns = []
    for field in (pk, *fields):
        convert, attname, column = _converter(field, connection), field.attname, []
        for obj in objs:
            value = getattr(obj, attname)
            if hasattr(value, "resolve_expression"):
                return None
            column.append(convert(value))
        columns.append(column)
    quote = connection.ops.quote_name
    table = quote(meta.db_table)
    values = ", ".join(
        [f"unnest(%b::{types[0]}) AS pk"]
        + [f"unnest(%b::{array}) AS c{i}" for i, array in enumerate(types[1:])]
    )
    assignments = ", ".join(
        f"{quote(field.column)} = datapipe_rows.c{i}" for i, field in enumerate(fields)
    )
    sql = (
        f"UPDATE {table} SET {assignments} FROM (SELECT {values}) AS datapipe_rows "
        f"WHERE {table}.{quote(pk.column)} = datapipe_rows.pk"
    )
    return sql, columns


def _converter(field, connection):
    """A function from a value of ``field`` to what its array holds: ``get_db_prep_save``,
    except for values that a plain Django field would leave as they are (most values, at
    a fraction of the cost); JSON as text, which the cast to ``jsonb[]`` parses."""
    target = field.target_field if type(field) is models.ForeignKey else field

    def prepared(value):
        return field.get_db_prep_save(value, connection)

    if type(target) is models.JSONField:
        encoder = target.encoder
        return lambda value: None if value is None else json.dumps(value, cls=encoder)
    if type(target) is models.DateTimeField:
        return lambda value: (
            value
            if type(value) is datetime.datetime and value.tzinfo is not None
            else prepared(value)
        )
    kept = kept_types(field)
    if kept is None:
        return prepared
    return lambda value: value if type(value) in kept else prepared(value)


def _array_type(field, connection) -> str | None:
    """``field``'s column type as an array type (``varchar[]``), or None if not in
    :data:`ARRAY_TYPES` (a foreign key has the type of the column it points to)."""
    db_type = (field.db_type(connection) or "").strip().lower()
    modified = _MODIFIED.fullmatch(db_type)
    if modified:
        db_type = _UNMODIFIED.get(modified[1], modified[1])
    return f"{db_type}[]" if db_type in ARRAY_TYPES else None


def _can_use_arrays(connection) -> bool:
    if connection.vendor != "postgresql":
        return False
    from django.db.backends.postgresql.psycopg_any import is_psycopg3

    return is_psycopg3
