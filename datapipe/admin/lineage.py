"""The lineage page of any object, and the links to it from other admin pages.

``/admin/datapipe/lineage/<app_label>/<model_name>/<pk>/`` shows what the object was made
of (upstream, from its first source down to it, with the run that made each step) and
what pipelines made of it (downstream), as trees. It hangs on the proxy model
:class:`~datapipe.models.Lineage`, hidden from the admin index.

Who may see it: a staff user with ``datapipe.view_pipelinetrack`` (lineage is read from
the trackers); others are refused (403; the login page for non-staff). On the page,
error rows are listed and linked for users who may view them
(``datapipe.view_pipelineerror``) and counted for others; an object's text is shown,
and linked to its change page, when the user may view its model, else its label and pk.

:class:`LineageMixin` puts a "Lineage" link on the change page of any ModelAdmin.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.apps import apps
from django.contrib import admin
from django.contrib.admin.utils import quote, unquote
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ObjectDoesNotExist, PermissionDenied, ValidationError
from django.db import router
from django.db.models import Model, Q
from django.http import Http404
from django.template.defaultfilters import truncatechars
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from ..lineage import DEPTH, LIMIT, describe, downstream, upstream
from ..models import PipelineError, PipelineRun, PipelineTrack
from .readonly import ReadOnlyMixin

__all__ = [
    "VIEW_PERMISSION", "LineageAdmin", "LineageMixin", "can_view_lineage", "items_of_run",
    "lineage_url", "runs_at",
]

#: The permission the lineage page needs (besides being staff).
VIEW_PERMISSION = "datapipe.view_pipelinetrack"


def can_view_lineage(user) -> bool:
    """Whether ``user`` may open lineage pages."""
    return bool(user.is_active and user.is_staff and user.has_perm(VIEW_PERMISSION))


def lineage_url(model, pk: Any, site_name: str = "admin") -> str:
    """The lineage page of the row ``pk`` of ``model`` on the admin site ``site_name``."""
    opts = model._meta
    return reverse(f"{site_name}:datapipe_lineage",
                   args=[opts.app_label, opts.model_name, quote(str(pk))])


class LineageMixin:
    """A ModelAdmin mixin: a "Lineage" link among the change page's object tools.

    It sets ``change_form_template``; a ModelAdmin with a template of its own includes
    ``datapipe/admin/lineage_link.html`` in its ``object-tools-items`` block instead.
    """

    change_form_template = "datapipe/admin/lineage_change_form.html"

    def render_change_form(self, request, context, add=False, change=False, form_url="",
                           obj=None):
        if obj is not None and obj.pk is not None and can_view_lineage(request.user):
            context["lineage_url"] = lineage_url(type(obj), obj.pk, self.admin_site.name)
        return super().render_change_form(request, context, add, change, form_url, obj)


class LineageAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """Serves the lineage pages; registered for :class:`~datapipe.models.Lineage`."""

    #: Levels of the downstream tree.
    depth = DEPTH
    #: At most this many objects in the downstream tree.
    limit = LIMIT

    def get_model_perms(self, request):
        return {}  # no line on the admin index: the page is reached from objects

    def has_view_permission(self, request, obj=None):
        return can_view_lineage(request.user)


    def get_urls(self):
        view = self.admin_site.admin_view(self.lineage_view)
        return [path("<str:app_label>/<str:model_name>/<path:object_id>/", view,
                     name="datapipe_lineage")]

    def lineage_view(self, request, app_label, model_name, object_id):
        """Both trees of one object; 404 for an unknown model or row."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            model = apps.get_model(app_label, model_name)
            obj = model._base_manager.get(pk=unquote(object_id))
        except (LookupError, ValueError, ValidationError, ObjectDoesNotExist) as exc:
            raise Http404(f"No {app_label}.{model_name} with primary key {object_id!r}") from exc
        tree = downstream(obj, self.depth, limit=self.limit)
        steps = upstream(obj)
        page = _Page(self.admin_site, request, obj._state.db)
        shown = describe(obj) if page.may_see(model) else page.name(model, obj.pk)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Lineage of {shown}",
            "subtitle": None,
            "opts": self.opts,
            "object_label": f"{model._meta.label_lower} {obj.pk}",
            "object_url": page.change_url(model, obj.pk),
            "upstream_tree": page.upstream(obj, steps) if steps else None,
            "downstream_tree": page.downstream(tree) if tree.children else None,
            "object_errors": page.errors(tree.errors),
            "depth": self.depth,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "datapipe/admin/lineage.html", context)


class _Page:
    """Renders the trees of one page for one user (what they may see, linked)."""

    def __init__(self, site, request, using):
        self.site, self.request, self.using = site, request, using
        self.can_view_errors = (site.is_registered(PipelineError)
                                and request.user.has_perm("datapipe.view_pipelineerror"))
        self.links_runs = site.is_registered(PipelineRun)
        self._may_see: dict = {}

    def may_see(self, model) -> bool:
        """Whether the user may view rows of ``model`` (its admin's rule when it has one)."""
        if model not in self._may_see:
            if self.site.is_registered(model):
                model_admin = self.site.get_model_admin(model)
                allowed = model_admin.has_view_or_change_permission(self.request)
            else:
                opts, user = model._meta, self.request.user
                allowed = any(user.has_perm(f"{opts.app_label}.{action}_{opts.model_name}")
                              for action in ("view", "change"))
            self._may_see[model] = allowed
        return self._may_see[model]

    @staticmethod
    def name(model, pk) -> str:
        return f"{model._meta.label_lower} {pk}"

    def change_url(self, model, pk) -> str | None:
        if model is None or not self.site.is_registered(model) or not self.may_see(model):
            return None
        opts = model._meta
        try:
            return reverse(f"{self.site.name}:{opts.app_label}_{opts.model_name}_change",
                           args=[quote(str(pk))])
        except NoReverseMatch:
            return None

    # One object ------------------------------------------------------------------------------

    def entry(self, label, model, pk, obj, errors, made_by="", current=False):
        """One object of a tree: its text (linked), label and pk, what made it, its errors."""
        if model is None:
            text = format_html("{} {} <em>(model no longer installed)</em>", label, pk)
        elif obj is None:
            text = format_html('<span class="datapipe-deleted">{} {}</span> <em>deleted</em>',
                               label, pk)
        else:
            shown = describe(obj) if self.may_see(model) else self.name(model, pk)
            url = self.change_url(model, pk)
            text = format_html('<a href="{}">{}</a>', url, shown) if url else shown
            text = format_html('{} <small class="datapipe-label">{} {}</small>', text, label, pk)
            if not current:
                text = format_html('{} <a class="datapipe-lineage-link" href="{}">lineage</a>',
                                   text, lineage_url(model, pk, self.site.name))
        if current:
            text = format_html('<strong class="datapipe-current">{}</strong>', text)
        return format_html("{}{}{}", text, made_by, self.errors(errors))

    def made_by(self, pipeline, made_at, with_run=False):
        """"made by <pipeline> at <time>", with the run(s) running then (a query) if asked."""
        when = f"{timezone.localtime(made_at):%Y-%m-%d %H:%M:%S}" if made_at else "?"
        asked = with_run and made_at and self.links_runs
        runs = runs_at(pipeline, made_at, self.using) if asked else []
        links = format_html_join(" or ", '<a href="{}">run #{}</a>', (
            (reverse(f"{self.site.name}:datapipe_pipelinerun_change", args=[run.pk]), run.pk)
            for run in runs
        ))
        runs_text = format_html(", {}", links) if runs else ""
        return format_html(' <span class="datapipe-made-by">&middot; made by <code>{}</code> at '
                           "{}{}</span>", pipeline, when, runs_text)

    def errors(self, rows) -> str:
        if not rows:
            return ""
        if not self.can_view_errors:
            return format_html(' <span class="datapipe-errors">{} error rows</span>', len(rows))
        items = format_html_join("", '<li class="{}"><a href="{}">{}: {}</a> ({})</li>', (
            ("open" if not row.resolved else "resolved",
             reverse(f"{self.site.name}:datapipe_pipelineerror_change", args=[row.pk]),
             row.pipeline_name, truncatechars(f"{row.error_type}: {row.error_message}", 120),
             "resolved" if row.resolved else "open")
            for row in rows
        ))
        return format_html('<ul class="datapipe-errors">{}</ul>', items)

    # The trees -------------------------------------------------------------------------------

    def downstream(self, node, current=True) -> str:
        made_by = self.made_by(node.pipeline, node.made_at) if node.pipeline else ""
        entry = self.entry(node.label, node.model, node.pk, node.object,
                           [] if current else node.errors, made_by, current)
        children = format_html_join("", "{}", ((self.downstream(child, False),)
                                               for child in node.children))
        more = format_html('<li class="datapipe-more">... more, not shown (depth or size '
                           "limit)</li>") if node.truncated else ""
        inner = format_html("<ul>{}{}</ul>", children, more) if children or more else ""
        return format_html('<li>{}{}</li>', entry, inner)

    def upstream(self, obj, steps) -> str:
        """From the first source down to ``obj``: each entry made by the step above it."""
        entries = []
        for index in range(len(steps) - 1, -1, -1):
            step = steps[index]
            above = steps[index + 1] if index + 1 < len(steps) else None
            made_by = self.made_by(above.pipeline, above.made_at, True) if above else ""
            entries.append(self.entry(step.label, step.model, step.pk, step.item, step.errors,
                                      made_by))
        made_by = self.made_by(steps[0].pipeline, steps[0].made_at, True)
        entries.append(self.entry(obj._meta.label_lower, type(obj), obj.pk, obj, [], made_by,
                                  current=True))
        html = ""
        for entry in reversed(entries):
            inner = format_html("<ul>{}</ul>", html) if html else ""
            html = format_html("<li>{}{}</li>", entry, inner)
        return html


# Runs and lineage ----------------------------------------------------------------------------


def runs_at(pipeline: str, moment: datetime, using: str, limit: int = 3) -> list[PipelineRun]:
    """The runs of ``pipeline`` that were running at ``moment`` (when a tracker was
    written), earliest started first: usually one, the run that made those outputs.
    Several when runs overlapped: a run waiting for the one before (runs of a pipeline
    are serialised, so the earliest is likely), or the triggers of Celery chunks running
    side by side. One query."""
    runs = PipelineRun.objects.using(using).filter(
        Q(finished_at__isnull=True) | Q(finished_at__gte=moment),
        pipeline_name=pipeline, started_at__lte=moment,
    )
    return list(runs.order_by("started_at", "id")[:limit])


def items_of_run(run: PipelineRun, limit: int = 20) -> list[tuple[type[Model], str]]:
    """Up to ``limit`` model items of ``run`` to ask lineage about, as ``(model, pk text)``:
    those with error rows of the run first, then items tracked under the run's pipeline
    while it ran (any of them). Two queries; on PostgreSQL the window on ``updated_at`` is
    answered by the BRIN index of migration 0005, elsewhere by reading the table."""
    using = run._state.db or router.db_for_read(PipelineRun)
    failed = (
        PipelineError.objects.using(using)
        .filter(run=run, item_content_type__isnull=False, item_id__isnull=False)
        .order_by("-last_seen", "-id")
        .values_list("item_content_type_id", "item_id")[:limit]
    )
    tracked = PipelineTrack.objects.using(using).filter(
        pipeline_name=run.pipeline_name, updated_at__gte=run.started_at
    )
    if run.finished_at is not None:
        tracked = tracked.filter(updated_at__lte=run.finished_at)
    # No order: sorting would read every tracker of the run; any of them will do.
    tracked = tracked.order_by().values_list("item_content_type_id", "item_id")[:limit]
    found = []
    for type_id, item_id in dict.fromkeys([*failed, *tracked]):
        model = ContentType.objects.db_manager(using).get_for_id(type_id).model_class()
        if model is not None:
            found.append((model, item_id))
    return found[:limit]
