"""``run(select=...)``: which of the items handed to a run it processes.

``"all"``: every one. ``"new"``: those with no tracker under the pipeline and no open
error row (never processed into outputs, never failing). ``"failed"``: those with an
open error row under the pipeline. A QuerySet is filtered in its own query (two
``EXISTS`` on indexed columns); other items are looked up a batch at a time, never with
a query per item.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from typing import Any

from django.db.models import CharField, Exists, OuterRef, Q, QuerySet
from django.db.models.functions import Cast

from .identity import Identity, content_type_id, identity

__all__ = ["select_items"]

#: Items looked up at a time when they are not a QuerySet.
BATCH = 1000


def select_items(items: Any, pipeline_name: str, select: str, using: str) -> Any:
    """``items`` narrowed to those ``select`` keeps for the pipeline ``pipeline_name``."""
    if select == "all":
        return items
    if isinstance(items, QuerySet):
        return _select_in_query(items, pipeline_name, select, using)
    return _select_batches(items, pipeline_name, select, using)


def _select_in_query(items: QuerySet, pipeline_name: str, select: str, using: str) -> QuerySet:
    from .models import PipelineError, PipelineTrack

    same_item = {
        "item_content_type_id": content_type_id(items.model, using),
        "item_id": Cast(OuterRef("pk"), CharField()),
    }
    failing = Exists(PipelineError.objects.using(using).filter(
        pipeline_name=pipeline_name, resolved=False, **same_item))
    if select == "failed":
        return items.filter(failing)
    tracked = Exists(PipelineTrack.objects.using(using).filter(
        pipeline_name=pipeline_name, **same_item))
    return items.filter(~tracked, ~failing)


def _select_batches(items: Iterable, pipeline_name: str, select: str,
                    using: str) -> Iterator[Any]:
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, BATCH)):
        named = [(item, identity(item, using)) for item in batch]
        failing = _failing(named, pipeline_name, using)
        if select == "failed":
            yield from (item for item, ident in named if ident.key in failing)
            continue
        tracked = _tracked(named, pipeline_name, using)
        yield from (item for item, ident in named
                    if ident.key not in failing and ident.key not in tracked)


def _failing(named: list[tuple[Any, Identity]], pipeline_name: str, using: str) -> set[str]:
    from .models import PipelineError

    return set(PipelineError.objects.using(using).filter(
        pipeline_name=pipeline_name, resolved=False,
        item_key__in=[ident.key for _, ident in named],
    ).values_list("item_key", flat=True))


def _tracked(named: list[tuple[Any, Identity]], pipeline_name: str, using: str) -> set[str]:
    """Keys of the items that have a tracker under the pipeline."""
    from .models import PipelineTrack

    by_type: dict[Any, list[str]] = {}
    for _, ident in named:
        if ident.content_type_id is not None or ident.item_id is not None:
            by_type.setdefault(ident.content_type_id, []).append(ident.item_id)
    if not by_type:
        return set()
    query = Q()
    for type_id, ids in by_type.items():
        query |= Q(item_content_type_id=type_id, item_id__in=ids)
    rows = PipelineTrack.objects.using(using).filter(query, pipeline_name=pipeline_name)
    return {_key(type_id, item_id) for type_id, item_id in
            rows.values_list("item_content_type_id", "item_id")}


def _key(type_id, item_id: str) -> str:
    """The identity key of a tracker's item (as :class:`Identity` spells it)."""
    if type_id is None:  # a keyed record (datapipe.sources)
        return Identity.of_record(item_id).key
    return Identity.of_row(type_id, item_id).key
