"""Lineage: where an item went, and where an object came from.

The reparse trackers (:class:`~datapipe.models.PipelineTrack`) say, per pipeline, which
outputs each item produced. :func:`downstream` follows them from an object to what was
made of it: the trackers whose item is the object, then those whose items are its
outputs (the cascade of triggers). :func:`upstream` goes back: the tracker listing the
object among its outputs names the item it was made of, and so on to the first source.

Queries, whatever the size of the tracker table: ``downstream`` takes one per level
(trackers found by the index on their item), one more when the depth cut the tree, one
per model (the objects) and one for error rows; ``upstream`` one per step, one per model
and one for error rows. A step is "which tracker lists this output": on PostgreSQL the
containment query ``outputs @> '{"app_label.model": [pk]}'``, answered by the GIN index
of migration 0005. SQLite has no such index: a step reads the whole tracker table with
``json_each`` (milliseconds for thousands of trackers, seconds for millions; see
``benchmarks/LINEAGE.md``). Other databases use Django's ``contains`` lookup.

Traversal is bounded (``depth`` and ``limit`` nodes down, ``max_steps`` up) and an object
met twice is not followed again: pipelines make no cycles, but rows are not trusted.
Items that are not model instances (JSON values) have no trackers, so no lineage.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.apps import apps
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError
from django.db import connections, router
from django.db.models import BooleanField, Model, Q
from django.db.models.expressions import RawSQL

from .identity import content_type_id, pk_json
from .models import PipelineError, PipelineTrack

__all__ = [
    "DEPTH", "LIMIT", "MAX_STEPS", "Node", "Step", "describe", "downstream", "upstream",
]

#: How many levels below the object :func:`downstream` follows by default.
DEPTH = 5
#: At most this many nodes in a downstream tree (the root included).
LIMIT = 1000
#: At most this many steps :func:`upstream` takes back.
MAX_STEPS = 20

# Heavy columns of error rows that lineage never shows.
_ERROR_COLUMNS_LEFT_OUT = ("traceback_html", "frames", "error_args", "item_value")


@dataclass(eq=False)
class Node:
    """One object in a downstream tree.

    ``label`` and ``pk`` name it as trackers do (``app_label.model``, the pk as stored);
    ``model`` is None when no installed model has that label any more. ``object`` is the
    instance, None when it was deleted since. ``pipeline`` made it (None at the root),
    at ``made_at``. ``errors`` are its error rows as an item (open and resolved, latest
    first); ``children`` what pipelines made of it. ``truncated``: it has children that
    the depth or the node limit left out.
    """

    label: str
    pk: Any
    pipeline: str | None = None
    model: type[Model] | None = None
    object: Model | None = None
    made_at: datetime | None = None
    errors: list[PipelineError] = field(default_factory=list)
    children: list[Node] = field(default_factory=list)
    truncated: bool = False

    @property
    def deleted(self) -> bool:
        """Whether the object no longer exists."""
        return self.object is None

    def walk(self) -> Iterator[Node]:
        """This node and every node below it, depth first."""
        yield self
        for child in self.children:
            yield from child.walk()

    def as_dict(self) -> dict:
        """The tree as JSON-encodable dicts (what ``datapipe lineage --json`` prints)."""
        return {
            **_described(self.label, self.pk, self.object, self.errors),
            "pipeline": self.pipeline,
            "made_at": _iso(self.made_at),
            "truncated": self.truncated,
            "children": [child.as_dict() for child in self.children],
        }


class Step(tuple):
    """One step back from an object: unpacks as ``(pipeline_name, item)``.

    ``item`` is the instance the pipeline processed (None when deleted since). Also:
    ``label``, ``pk`` (the item's pk as text), ``model`` (None when no installed model has
    that content type any more), ``made_at`` (when the tracker was written),
    ``triggered_by`` (the pipeline whose result the item was, or ``""``) and ``errors``
    (the item's error rows, latest first).
    """

    label: str
    pk: str
    model: type[Model] | None
    made_at: datetime | None
    triggered_by: str
    errors: list[PipelineError]

    def __new__(cls, pipeline: str, item: Model | None, **details: Any) -> Step:
        step = super().__new__(cls, (pipeline, item))
        vars(step).update({"triggered_by": "", "made_at": None, "errors": [], **details})
        return step

    @property
    def pipeline(self) -> str:
        """The pipeline that made the object of the step before from this item."""
        return self[0]

    @property
    def item(self) -> Model | None:
        """The item the pipeline processed; None when it was deleted since."""
        return self[1]

    @property
    def deleted(self) -> bool:
        """Whether the item no longer exists."""
        return self[1] is None

    def as_dict(self) -> dict:
        """The step as a JSON-encodable dict."""
        return {
            "pipeline": self.pipeline,
            **_described(self.label, self.pk, self.item, self.errors),
            "made_at": _iso(self.made_at),
            "triggered_by": self.triggered_by or None,
        }


# Downstream --------------------------------------------------------------------------------


def downstream(
    obj: Model, depth: int = DEPTH, *, limit: int = LIMIT, using: str | None = None
) -> Node:
    """The tree of what pipelines made of ``obj``, ``depth`` levels down.

    The root is ``obj`` (``pipeline`` None); each child is an output that a pipeline
    saved while processing its parent. At most ``limit`` nodes; parents whose children
    were left out are marked ``truncated``. ``using``: the database of the trackers
    (default: ``obj``'s).
    """
    using = _database(obj, using)
    root = Node(obj._meta.label_lower, pk_json(obj.pk), model=type(obj), object=obj)
    seen = {_key(type(obj), obj.pk, using)}
    level, count = [root], 1
    for _ in range(depth):
        level, count = _next_level(level, seen, count, limit, using)
        if not level:
            break
    else:
        for node in _having_trackers(level, using):
            node.truncated = True
    nodes = [node for node in root.walk() if node.model is not None]
    objects = _objects([(node.model, node.pk) for node in nodes[1:]], using)
    errors = _errors_of([_key(node.model, node.pk, using) for node in nodes], using)
    for node in nodes[1:]:
        node.object = objects.get((node.model, str(node.pk)))
    for node in nodes:
        node.errors = errors.get(_key(node.model, node.pk, using), [])
    return root


def _next_level(level: list[Node], seen: set, count: int, limit: int, using: str):
    """The children of the nodes of ``level`` (one query), and the new node count."""
    children: list[Node] = []
    for parent, pipeline, outputs, made_at in _trackers_of(level, using):
        for label, pks in sorted(outputs.items()):
            model = _model(label)
            for pk in pks:
                if model is not None:
                    key = _key(model, pk, using)
                    if key in seen:
                        continue
                    seen.add(key)
                if count >= limit:
                    parent.truncated = True
                    continue
                child = Node(label, pk, pipeline, model, made_at=made_at)
                parent.children.append(child)
                children.append(child)
                count += 1
    return children, count


def _trackers_of(nodes: list[Node], using: str):
    """``(node, pipeline, outputs, made_at)`` of every tracker whose item is one of ``nodes``."""
    by_key = _by_key(nodes, using)
    rows = (
        PipelineTrack.objects.using(using)
        .filter(_items_filter(by_key))
        .order_by("pipeline_name", "id")
        .values_list("item_content_type_id", "item_id", "pipeline_name", "outputs", "updated_at")
    )
    for type_id, item_id, pipeline, outputs, made_at in rows if by_key else ():
        yield by_key[(type_id, item_id)], pipeline, outputs or {}, made_at


def _having_trackers(nodes: list[Node], using: str) -> list[Node]:
    """The nodes that have trackers of their own (what the depth cut off), in one query."""
    by_key = _by_key(nodes, using)
    tracks = PipelineTrack.objects.using(using).filter(_items_filter(by_key))
    keys = tracks.values_list("item_content_type_id", "item_id").distinct() if by_key else ()
    return [by_key[key] for key in keys]


def _by_key(nodes: list[Node], using: str) -> dict[tuple[int, str], Node]:
    return {_key(node.model, node.pk, using): node for node in nodes if node.model is not None}


# Upstream ----------------------------------------------------------------------------------


def upstream(obj: Model, *, using: str | None = None, max_steps: int = MAX_STEPS) -> list[Step]:
    """The items ``obj`` was made of, nearest first, each with the pipeline that made it.

    ``[("news.link.tags", news), ("news.import", raw)]`` for a tag that
    ``news.link.tags`` made of ``news``, which ``news.import`` made of ``raw``. Empty
    when no pipeline made ``obj``. If several trackers list an object (an object saved
    again by another item), the latest written is followed.
    """
    using = _database(obj, using)
    found = list(_walk_up(type(obj), obj.pk, using, max_steps))
    refs = [(model, pk) for _, model, _, pk, _, _ in found if model is not None]
    objects = _objects(refs, using)
    errors = _errors_of({_key(model, pk, using) for model, pk in refs}, using)
    return [
        Step(pipeline, objects.get((model, pk)), label=label, pk=pk, model=model,
             made_at=made_at, triggered_by=triggered_by,
             errors=errors.get(_key(model, pk, using), []) if model is not None else [])
        for pipeline, model, label, pk, made_at, triggered_by in found
    ]


def _walk_up(model: type[Model], pk: Any, using: str, max_steps: int):
    """``(pipeline, model, label, pk text, made_at, triggered_by)`` of each item back from
    the object ``pk`` of ``model``; one query per step."""
    seen = {_key(model, pk, using)}
    for _ in range(max_steps):
        row = _listing_tracker(model, pk, using)
        if row is None:
            return
        pipeline, type_id, item_id, made_at, triggered_by = row
        if (type_id, item_id) in seen:
            return
        seen.add((type_id, item_id))
        if type_id is None:  # a keyed record (datapipe.sources): read from a file, no row
            yield pipeline, None, "record", item_id, made_at, triggered_by
            return
        content_type = ContentType.objects.db_manager(using).get_for_id(type_id)
        model = content_type.model_class()
        label = f"{content_type.app_label}.{content_type.model}"
        yield pipeline, model, label, item_id, made_at, triggered_by
        if model is None:
            return
        try:
            pk = model._meta.pk.to_python(item_id)
        except ValidationError:  # a tracker whose item id its model cannot read
            return


def _listing_tracker(model: type[Model], pk: Any, using: str):
    """The latest tracker listing this object among its outputs, or None (one query)."""
    return (
        PipelineTrack.objects.using(using)
        .filter(_lists_output(_labels(model), pk_json(pk), using))
        .order_by("-updated_at", "-id")
        .values_list("pipeline_name", "item_content_type_id", "item_id", "updated_at",
                     "triggered_by")
        .first()
    )


def _lists_output(labels: list[str], pk: Any, using: str):
    """A filter on trackers whose outputs list ``pk`` under one of ``labels``."""
    connection = connections[using]
    if connection.vendor != "sqlite":
        # PostgreSQL: outputs @> '{"label": [pk]}', an index look-up (migration 0005).
        condition = Q()
        for label in labels:
            condition |= Q(outputs__contains={label: [pk]})
        return condition
    # SQLite has no containment operator for JSON: json_each reads each row's list.
    column = "{}.{}".format(connection.ops.quote_name(PipelineTrack._meta.db_table),
                            connection.ops.quote_name("outputs"))
    test = f"EXISTS (SELECT 1 FROM json_each({column}, %s) AS output WHERE output.value = %s)"
    params = [value for label in labels for value in (f'$."{label}"', pk)]
    return RawSQL("(" + " OR ".join([test] * len(labels)) + ")", params,
                  output_field=BooleanField())


def _labels(model: type[Model]) -> list[str]:
    """The labels trackers may file an object of ``model`` under: its concrete model's
    and those of the proxies of it (outputs are listed under the class they were saved as)."""
    concrete = model._meta.concrete_model
    labels = {concrete._meta.label_lower}
    labels.update(other._meta.label_lower for other in apps.get_models()
                  if other._meta.proxy and other._meta.concrete_model is concrete)
    return sorted(labels)


# Shared ------------------------------------------------------------------------------------


def _database(obj: Model, using: str | None) -> str:
    return using or obj._state.db or router.db_for_read(type(obj))


def _key(model: type[Model], pk: Any, using: str) -> tuple[int, str]:
    """What trackers and error rows name an object by: concrete content type, pk as text."""
    return content_type_id(model, using), str(pk)


def _model(label: str) -> type[Model] | None:
    try:
        return apps.get_model(label)
    except (LookupError, ValueError):  # a model removed since the tracker was written
        return None


def _items_filter(keys: Iterable[tuple[int, str]]) -> Q:
    """A filter on ``item_content_type`` and ``item_id`` in ``keys`` (one term per type)."""
    by_type: dict[int, list[str]] = {}
    for type_id, item_id in keys:
        by_type.setdefault(type_id, []).append(item_id)
    condition = Q()
    for type_id, ids in by_type.items():
        condition |= Q(item_content_type_id=type_id, item_id__in=ids)
    return condition


def _objects(refs: list[tuple[type[Model], Any]], using: str) -> dict[tuple, Model]:
    """``{(model, pk text): instance}`` of the rows that still exist; one query per model."""
    by_model: dict[type[Model], list] = {}
    for model, pk in refs:
        by_model.setdefault(model, []).append(pk)
    found = {}
    for model, pks in by_model.items():
        for pk, obj in model._base_manager.using(using).in_bulk(pks).items():
            found[(model, str(pk))] = obj
    return found


def _errors_of(keys: Iterable[tuple[int, str]], using: str) -> dict[tuple, list[PipelineError]]:
    """The error rows of these items, latest first, by item key (one query)."""
    keys = list(keys)
    if not keys:
        return {}
    rows = (
        PipelineError.objects.using(using)
        .filter(_items_filter(keys))
        .defer(*_ERROR_COLUMNS_LEFT_OUT)
        .order_by("-last_seen", "-id")
    )
    found: dict[tuple, list[PipelineError]] = {}
    for row in rows:
        found.setdefault((row.item_content_type_id, row.item_id), []).append(row)
    return found


def _described(label: str, pk: Any, obj: Model | None, errors: list[PipelineError]) -> dict:
    return {
        "model": label,
        "pk": pk,
        "repr": None if obj is None else describe(obj),
        "deleted": obj is None,
        "errors": [
            {"id": row.pk, "pipeline": row.pipeline_name,
             "error": f"{row.error_type}: {row.error_message}", "resolved": row.resolved,
             "last_seen": _iso(row.last_seen)}
            for row in errors
        ],
    }


def describe(obj: Model) -> str:
    """``str(obj)``, or a placeholder when its ``__str__`` raises (it is the data's code)."""
    try:
        return str(obj)
    except Exception:
        return f"<{type(obj).__name__} {obj.pk}>"


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None
