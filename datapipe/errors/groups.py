"""Error groups: the rows of one failure (same pipeline, same signature) and their figures.

The admin lists groups and the ``datapipe errors`` command prints them; both go through
:func:`group_rows`, which keeps model instances (the latest row of each group) so that
the admin's change list, pagination and actions work on groups unchanged.
"""

from __future__ import annotations

from django.db.models import Count, IntegerField, Max, Min, OuterRef, Q, QuerySet, Subquery

__all__ = ["group_messages", "group_rows", "group_trend", "rows_of_groups"]


def group_rows(rows: QuerySet) -> QuerySet:
    """The latest row of each group of ``rows``, annotated with the group's figures.

    Figures count the rows of ``rows`` only (so a filter or search narrows them):
    ``group_rows`` (all), ``open_rows`` (unresolved), ``items`` (distinct items),
    ``messages`` (distinct messages), ``group_first_seen`` and ``group_last_seen``.
    Ordered by last seen, newest first.
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
        messages=figure(Count("error_message", distinct=True), IntegerField()),
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


def group_messages(rows: QuerySet, limit: int = 20) -> list[tuple[str, int, int]]:
    """The distinct messages of ``rows`` (one group's) as ``(message, rows, open rows)``,
    the most frequent first; at most ``limit`` of them."""
    figures = rows.order_by().values("error_message").annotate(
        n=Count("pk"), open=Count("pk", filter=Q(resolved=False))
    ).order_by("-n", "error_message")[:limit]
    return [(f["error_message"], f["n"], f["open"]) for f in figures]


def group_trend(rows: QuerySet, since, days: int) -> dict[tuple[str, str], list[int]]:
    """Failures per day of the groups of ``rows`` over ``days`` days from ``since`` (a
    date): ``{(pipeline_name, signature): [n, ...]}``, one count per day, oldest first.

    A failure is an item failing in a run (an error row's occurrence), in one query.
    """
    from django.db.models.functions import TruncDate

    counts = rows.model.occurrences.rel.related_model._default_manager.using(rows.db).filter(
        error__in=rows.order_by().values("pk"), seen_at__date__gte=since,
    ).values("error__pipeline_name", "error__signature", day=TruncDate("seen_at")).annotate(
        n=Count("pk")).order_by()
    trend: dict[tuple[str, str], list[int]] = {}
    for figure in counts:
        key = (figure["error__pipeline_name"], figure["error__signature"])
        index = (figure["day"] - since).days
        if 0 <= index < days:
            trend.setdefault(key, [0] * days)[index] += figure["n"]
    return trend
