"""Reparse: each item's outputs under a pipeline, replaced when the item is re-run.

One :class:`~datapipe.models.PipelineTrack` row per (pipeline, item) lists the item's
outputs. At each flush the trackers of the batch are read in one query, the old
outputs deleted, the new ones inserted and the trackers written in bulk: no query per
item. Deleting an output deletes, first, what other pipelines derived from it (their
trackers whose item is that output): reparse cascades along triggers.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from django.apps import apps
from django.db import connections
from django.db.models import CharField, IntegerField, QuerySet
from django.db.models.functions import Cast
from django.utils import timezone

from . import changes
from .buffer import ItemRecord
from .bulk import insert_rows
from .identity import Identity, content_type_id, tracked_identity
from .models import PipelineTrack

__all__ = ["Tracker", "delete_outputs"]

#: Trackers read at a time by :meth:`Tracker.prune`.
PRUNE_PAGE = 1000

# The columns that differ between the trackers of one write, in the order of its rows.
_ITEM_FIELDS = ("item_content_type_id", "item_id", "outputs")
# All the columns written, in the order of a full row (tests and benchmarks write those).
_TRACK_FIELDS = (
    "pipeline_name",
    "item_content_type_id",
    "item_id",
    "outputs",
    "triggered_by",
    "updated_at",
)


#: ``label_lower`` of each model class: a property that formats it at every call.
_labels: dict[type, str] = {}


def _label(model) -> str:
    label = _labels.get(model)
    if label is None:
        label = _labels[model] = model._meta.label_lower
    return label


def outputs_of(objects: Iterable) -> dict[str, list]:
    """``{model label: [pk, ...]}`` of saved objects."""
    outputs: dict[str, list] = {}
    for obj in objects:
        pk = obj.pk
        outputs.setdefault(_label(type(obj)), []).append(pk if isinstance(pk, int) else str(pk))
    return outputs


def _merge(into: dict[str, list], outputs: dict[str, list]) -> None:
    for label, pks in outputs.items():
        into.setdefault(label, []).extend(pks)


def delete_outputs(outputs: dict[str, list], using: str) -> None:
    """Delete these outputs and, before them, everything derived from them."""
    levels = []
    while outputs:
        levels.append(outputs)
        derived: dict[str, list] = {}
        for label, pks in outputs.items():
            rows = PipelineTrack.objects.using(using).filter(
                item_content_type_id=content_type_id(apps.get_model(label), using),
                item_id__in=[str(pk) for pk in pks],
            )
            for row_outputs in rows.values_list("outputs", flat=True):
                _merge(derived, row_outputs)
            rows.delete()
        outputs = derived
    for level in reversed(levels):  # what was derived goes first (foreign keys)
        for label, pks in level.items():
            _, by_label = apps.get_model(label)._base_manager.using(using).filter(
                pk__in=pks).delete()
            changes.deleted(by_label)


class Tracker:
    """Reads and writes the trackers of one pipeline, a batch at a time."""

    def __init__(self, pipeline_name: str, using: str, triggered_by: str = "", enabled=True):
        self.pipeline_name = pipeline_name
        self.using = using
        self.triggered_by = triggered_by or ""
        self.enabled = enabled
        #: No item of the run has a tracker yet (see :meth:`untracked`): no look-up.
        self.fresh = False
        self._type_ids: dict[type, int] = {}
        self._tracks = PipelineTrack.objects.using(using).filter(pipeline_name=pipeline_name)

    def untracked(self) -> bool:
        """Whether the pipeline has no tracker at all (one index probe)."""
        return not self._tracks.exists()

    def key_of(self, item: Any) -> Identity | None:
        """:func:`~datapipe.identity.tracked_identity` of ``item``, with the content type
        of its class remembered for the run (a look-up per item costs more than the
        rest of its tracking)."""
        type_id = self._type_ids.get(type(item))
        if type_id is not None:
            pk = item.pk
            if pk is not None:
                return Identity.of_row(type_id, pk)
        key = tracked_identity(item, self.using)
        if key is not None and key.is_model:
            self._type_ids[type(item)] = key.content_type_id
        return key

    def revert(self, records: list[ItemRecord]) -> None:
        """Delete the old outputs of these items (and their trackers).

        When :attr:`fresh`, only the items' keys are taken: the caller knows that none
        of them has a tracker. A first run over a table that grows from empty inside one
        transaction would otherwise look up each batch with statistics that still say
        "empty", by a plan that reads every tracker of the pipeline so far.
        """
        if not self.enabled:
            return
        by_type: dict[int, list[str]] = {}
        for record in records:
            if record.key is None:
                record.key = self.key_of(record.item)
            if record.key is not None:
                by_type.setdefault(record.key.content_type_id, []).append(record.key.item_id)
        if self.fresh:
            return
        for type_id, ids in by_type.items():
            self._revert(self._rows_of(type_id, list(dict.fromkeys(ids))))

    def prune(self, since, kept: Iterable[tuple] = ()) -> int:
        """A full refresh (``run(prune=True)``): delete the outputs and trackers of the
        items tracked under the pipeline whose trackers were last written before
        ``since`` (the run's start: this run did not process them into outputs), except
        ``kept``, ``(content type id, item id)`` pairs (the items that failed in this
        run: an error keeps old outputs).
        Returns how many items were pruned; a page of trackers at a time."""
        if not self.enabled:
            return 0
        kept = set(kept)
        stale = self._tracks.filter(updated_at__lt=since).order_by("id")
        pruned, last = 0, 0
        while page := list(stale.filter(id__gt=last).values_list(
                "id", "item_content_type_id", "item_id")[:PRUNE_PAGE]):
            last = page[-1][0]
            ids = [row_id for row_id, *item in page if tuple(item) not in kept]
            self._revert_rows(PipelineTrack.objects.using(self.using).filter(id__in=ids))
            pruned += len(ids)
        return pruned

    def _rows_of(self, type_id: int | None, ids: list[str]) -> list[tuple[int, dict]]:
        """``(id, outputs)`` of the pipeline's trackers of these items (of content type
        ``type_id``; None: keyed records)."""
        connection = connections[self.using]
        if connection.vendor != "postgresql":
            rows = self._tracks.filter(item_content_type_id=type_id, item_id__in=ids)
            return list(rows.values_list("id", "outputs"))
        with connection.cursor() as cursor:
            cursor.execute(_LOOKUP.format(
                table=connection.ops.quote_name(PipelineTrack._meta.db_table),
                type="IS NULL" if type_id is None else "= %s",
            ), [ids, self.pipeline_name, *([] if type_id is None else [type_id])])
            return [(row_id, json.loads(outputs)) for row_id, outputs in cursor.fetchall()]

    def _revert_rows(self, rows: QuerySet) -> None:
        self._revert(rows.values_list("id", "outputs"))

    def _revert(self, rows) -> None:
        """Delete these trackers (``(id, outputs)`` pairs) and their outputs."""
        old: dict[str, list] = {}
        ids = []
        for row_id, outputs in rows:
            ids.append(row_id)
            _merge(old, outputs)
        if ids:
            PipelineTrack.objects.using(self.using).filter(id__in=ids).delete()
            delete_outputs(old, self.using)

    def write(self, records: list[ItemRecord]) -> None:
        """Write one tracker per item that has outputs (the latest record of an item wins)."""
        if not self.enabled:
            return
        latest: dict[tuple, ItemRecord] = {}
        superseded: dict[str, list] = {}
        for record in records:
            if record.key is None:
                continue
            earlier = latest.get(record.key)
            if earlier is not None:  # the same item twice in one batch: keep the last run
                _merge(superseded, outputs_of(earlier.outputs()))
            latest[record.key] = record
        if superseded:
            delete_outputs(superseded, self.using)
        now = timezone.now()
        rows = [
            (key.content_type_id, key.item_id, outputs_of(outputs))
            for key, record in latest.items()
            if (outputs := record.outputs())
        ]
        if rows:
            insert_rows(PipelineTrack, _ITEM_FIELDS, rows, self.using, same={
                "pipeline_name": self.pipeline_name, "triggered_by": self.triggered_by,
                "updated_at": now})

    def forget_filtered(self, handed: Any, prepared: Any, seen: set | None) -> None:
        """Delete the old outputs of items handed to the run that ``prepare`` left out.

        Two QuerySets of one model with an integer or text primary key are compared in
        SQL; otherwise the keys of ``handed`` are compared with those of ``prepared``
        (or, when ``prepared`` was a one-shot iterator, with ``seen``, the keys the
        loop met; None when the loop did not reach the end).
        """
        if not self.enabled:
            return
        if self._both_querysets_comparable(handed, prepared):
            as_text = Cast("pk", output_field=CharField())
            rows = self._tracks.filter(
                item_content_type_id=content_type_id(handed.model, self.using),
                item_id__in=handed.order_by().values(k=as_text),
            ).exclude(item_id__in=prepared.order_by().values(k=as_text))
            self._revert_rows(rows)
            return
        if isinstance(prepared, (QuerySet, Sequence)):
            seen = set(_keys_of(prepared, self.using))
        if seen is None:
            return
        by_type: dict[int, list[str]] = {}
        for key in _keys_of(handed, self.using):
            if key not in seen:
                by_type.setdefault(key.content_type_id, []).append(key.item_id)
        for type_id, ids in by_type.items():
            self._revert(self._rows_of(type_id, list(dict.fromkeys(ids))))

    @staticmethod
    def _both_querysets_comparable(handed, prepared) -> bool:
        if not (isinstance(handed, QuerySet) and isinstance(prepared, QuerySet)):
            return False
        pk = handed.model._meta.pk
        return (
            handed.model is prepared.model
            and isinstance(pk, (IntegerField, CharField))
            and not handed.query.is_sliced
            and not prepared.query.is_sliced
        )


def prune_run(run, using: str, failed: Iterable[tuple]) -> int:
    """Prune (:meth:`Tracker.prune`) under ``run``'s pipeline what ``run`` did not
    process, except the ``failed`` items (pairs); return how many items were pruned."""
    from .registry import registry

    tracker = Tracker(run.pipeline_name, using, enabled=registry.get(run.pipeline_name).track)
    return tracker.prune(run.started_at, failed)


#: The trackers of a batch's items on PostgreSQL: one probe of the unique index per key
#: (``LIMIT 1`` keeps each probe a probe). ``item_id = ANY(%s)`` lets the planner scan
#: every tracker of the pipeline instead, which it does inside a first run's transaction:
#: the statistics still say the table is empty (384 ms a batch at 1M trackers; 16 ms so).
_LOOKUP = (
    "SELECT t.id, t.outputs::text FROM unnest(%s::text[]) AS k(item_id) CROSS JOIN LATERAL ("
    "SELECT id, outputs FROM {table} WHERE pipeline_name = %s AND item_content_type_id {type} "
    "AND item_id = k.item_id LIMIT 1) AS t"
)


def _keys_of(items: Any, using: str):
    """The identities of the tracked items (model items, keyed records) among ``items``."""
    if isinstance(items, QuerySet):
        type_id = content_type_id(items.model, using)
        for pk in items.order_by().values_list("pk", flat=True).iterator():
            yield Identity.of_row(type_id, pk)
        return
    for item in items:
        key = tracked_identity(item, using)
        if key is not None:
            yield key
