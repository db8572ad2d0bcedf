"""Error groups: the rows of one failure (same pipeline, same signature) and their figures.

The admin lists groups and the ``datapipe errors`` command prints them; both go through
:func:`group_rows`, which keeps model instances (the latest row of each group) so that
the admin's change list, pagination and actions work on groups unchanged.
"""

from __future__ import annotations

from django.db.models import Count, IntegerField, Max, Min, OuterRef, Q, QuerySet, Subquery

__all__ = ["group_rows", "rows_of_groups"]


def group_rows(rows: QuerySet) -> QuerySet:
    """The latest row of each group of ``rows``, annotated with the group's figures.

    Figures count the rows of ``rows`` only (so a filter or search narrows them):
    ``group_rows`` (all), ``open_rows`` (unresolved), ``items`` (distinct items),
    ``group_first_seen`` and ``group_last_seen``. Ordered by last seen, newest first.
    """
    rows = rows.order_by()
    latest = rows.values("pipeline_name", "signature").annotate(latest=Max("pk")).values("latest")
    group = rows.filter(
        pipeline_name=OuterRef("pipeline_name"), signature=OuterRef("signature")
    ).values("pipeline_name", "signature")

    def figure(aggregate, output_field=None):
        figures = group.annotate(figure=aggregate).values("figure")
        return Subquery(figures, output_field=output_field)

    return rows.model._default_manager.using(rows.db).filter(pk__in=latest).annotate(
        group_rows=figure(Count("pk"), IntegerField()),
        open_rows=figure(Count("pk", filter=Q(resolved=False)), IntegerField()),
        items=figure(Count("item_key", distinct=True), IntegerField()),
        group_first_seen=figure(Min("first_seen")),
        group_last_seen=figure(Max("last_seen")),
    ).order_by("-group_last_seen", "-pk")


def rows_of_groups(members: QuerySet, open_only: bool = True) -> QuerySet:
    """Every row (open only, by default) of the groups that ``members`` belong to."""
    keys = set(members.order_by().values_list("pipeline_name", "signature"))
    model = members.model
    if not keys:
        return model._default_manager.using(members.db).none()
    condition = Q()
    for pipeline_name, signature in keys:
        condition |= Q(pipeline_name=pipeline_name, signature=signature)
    rows = model._default_manager.using(members.db).filter(condition)
    return rows.filter(resolved=False) if open_only else rows
