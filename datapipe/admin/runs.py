"""The admin of run records: root runs with their progress, and each run's tree of child runs.

Run records are read-only. The change list shows the runs a caller started (root runs)
by default; the "runs" filter shows every run. A run's page lists the runs it started
(its depends, its triggers, the runs started inside its Celery chunks), nested, and
links to the lineage of its items (those with error rows, then those it tracked).

Progress figures come from :meth:`PipelineRun.progress` (:meth:`PipelineRun.progress_of`
for a page of runs), the one computation of them. Resending the lost chunks of a run
needs the permission ``datapipe.resend_pipelinerun``; the views of the datapipe landing
page (:mod:`.dashboard`) are served under this admin's URLs.
"""

from __future__ import annotations

from pathlib import Path

from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.utils.safestring import mark_safe

from ..exceptions import DatapipeError
from ..models import PipelineRun
from ..models.runs import by_status
from . import dashboard
from .filters import ChoiceFilter
from .lineage import can_view_lineage, items_of_run, lineage_url
from .readonly import ReadOnlyMixin

__all__ = ["PipelineRunAdmin", "RunsFilter"]

RESEND_PERMISSION = "datapipe.resend_pipelinerun"


class RunsFilter(ChoiceFilter):
    """Root runs (the default: the runs no other run started) or all runs."""

    title = "runs"
    parameter_name = "runs"
    default_label = "Root runs"

    def lookups(self, request, model_admin):
        return [("all", "All runs")]

    def queryset(self, request, queryset):
        return queryset if self.value() == "all" else queryset.roots()


class RunChangeList(ChangeList):
    """Computes the progress of the page's runs at once (not a few queries per row)."""

    def get_results(self, request):
        super().get_results(request)
        figures = PipelineRun.progress_of(self.result_list)
        for run in self.result_list:
            run._admin_progress = figures[run.pk]


class PipelineRunAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """Run records, read-only: status, counts, timings, progress and child runs."""

    # The columns an operator reads first, narrow enough for a 1400 px screen.
    list_display = ["run_number", "pipeline", "run_status", "progress", "processed_errored",
                    "items_per_second", "started", "elapsed_seconds", "child_runs"]
    list_display_links = ["run_number"]
    list_filter = [RunsFilter, "status", "distributed", "pipeline_name"]
    date_hierarchy = "started_at"
    search_fields = ["pipeline_name", "=id"]
    list_per_page = 50
    change_form_template = "datapipe/admin/pipelinerun_change_form.html"
    #: Seconds between reloads of the page of a running run (its live progress).
    refresh_seconds = 5
    #: How deep the table of child runs on a run's page goes.
    tree_depth = 5
    #: At most this many children of one run are listed, the rest counted.
    children_per_run = 50
    #: At most this many rows in the table of child runs.
    tree_rows = 500
    #: At most this many items of the run linked to their lineage page.
    lineage_items = 20
    actions = ["resend_lost_chunks"]
    readonly_fields = ["run_status", "distributed_text", "progress", "broke_text",
                       "items_per_second", "elapsed_seconds", "errors_link", "children_table",
                       "chunks_table", "locations_list"]
    fields = [
        "pipeline_name", "run_status", "distributed_text", "parent", "triggered_by", "progress",
        ("processed", "succeeded", "continued", "ignored", "errored", "broke_text"),
        "items_per_second", "message", "started_at", "finished_at", "elapsed_seconds",
        "errors_link", "locations_list", "children_table", "chunks_table",
    ]

    class Media:
        css = {"all": ["datapipe/admin.css"]}

    def has_resend_permission(self, request):
        """Resending chunks needs ``datapipe.resend_pipelinerun``."""
        return request.user.has_perm(RESEND_PERMISSION)

    def get_changelist(self, request, **kwargs):
        return RunChangeList

    @admin.action(description="Resend the lost and failed chunks of the selected runs",
                  permissions=["resend"])
    def resend_lost_chunks(self, request, queryset):
        from ..distributed.dispatch import resend

        for run in queryset:
            try:
                sent = resend(run.pk, stale_after=0 if self.progress_of(run)["stale"] else None,
                              using=run._state.db)
            except DatapipeError as exc:  # a local run, or the broker is away
                self.message_user(request, str(exc), messages.ERROR)
                continue
            level = messages.SUCCESS if sent else messages.WARNING
            self.message_user(request, f"Run {run.pk}: {sent} chunks sent again.", level)

    # Views of the landing page ----------------------------------------------------------

    def get_urls(self):
        view = self.admin_site.admin_view
        name = f"{self.opts.app_label}_{self.opts.model_name}"
        return [
            path("<int:run_id>/resend/", view(self.resend_view), name=f"{name}_resend"),
            path("live/", view(self.live_view), name=f"{name}_live"),
            path("chart/<str:measure>/<str:span>.svg", view(self.chart_view),
                 name=f"{name}_chart"),
            *super().get_urls(),
        ]

    def resend_view(self, request, run_id):
        """POST: resend the lost and failed chunks of one run (the landing page's button),
        then go back to ``next`` (the landing page by default)."""
        if not self.has_resend_permission(request):
            raise PermissionDenied
        if request.method != "POST":
            return redirect(self.run_url(run_id))
        run = get_object_or_404(self.get_queryset(request), pk=run_id)
        self.resend_lost_chunks(request, [run])
        target = request.POST.get("next", "")
        if not url_has_allowed_host_and_scheme(target, {request.get_host()},
                                               request.is_secure()):
            target = reverse(f"{self.admin_site.name}:app_list", args=[self.opts.app_label])
        return redirect(target)

    def live_view(self, request):
        """JSON of the runs in progress, polled by the landing page's script."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        return dashboard.live_response(self.get_queryset(request), self.admin_site.name)

    def chart_view(self, request, measure, span):
        """A chart of the landing page, as an SVG image."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        return dashboard.chart_response(self.get_queryset(request), measure, span)

    def render_change_form(self, request, context, add=False, change=False, form_url="",
                           obj=None):
        if obj is not None and obj.status == obj.Status.RUNNING:
            context["refresh_seconds"] = self.refresh_seconds
        if obj is not None and can_view_lineage(request.user):
            context["lineage_links"] = [
                (f"{model._meta.label_lower} {pk}", lineage_url(model, pk, self.admin_site.name))
                for model, pk in items_of_run(obj, self.lineage_items)
            ]
        return super().render_change_form(request, context, add, change, form_url, obj)

    @staticmethod
    def progress_of(run) -> dict:
        """``run.progress()``, computed once per run object for all its columns."""
        if not hasattr(run, "_admin_progress"):
            run._admin_progress = run.progress()
        return run._admin_progress

    def run_url(self, run_id) -> str:
        """The admin page of the run ``run_id``."""
        return reverse(f"{self.admin_site.name}:datapipe_pipelinerun_change", args=[run_id])

    # Columns and fields -----------------------------------------------------------------

    @admin.display(description="run", ordering="pk")
    def run_number(self, run):
        return f"#{run.pk}"

    @admin.display(description="pipeline", ordering="pipeline_name")
    def pipeline(self, run):
        return dashboard.pipeline_cell(run.pipeline_name)

    @admin.display(description="processed / errored", ordering="processed")
    def processed_errored(self, run):
        return f"{run.processed} / {run.errored}"

    @admin.display(description="started", ordering="started_at")
    def started(self, run):
        return f"{timezone.localtime(run.started_at):%m-%d %H:%M:%S}"

    @admin.display(description="status", ordering="status")
    def run_status(self, run):
        return dashboard.status_badge(self.progress_of(run))

    @admin.display(description="progress")
    def progress(self, run):
        return dashboard.progress_cell(self.progress_of(run))

    @admin.display(description="items/s")
    def items_per_second(self, run):
        return dashboard.rate(self.progress_of(run)["items_per_second"])

    @admin.display(description="distributed")
    def distributed_text(self, run):
        return "yes (Celery chunks)" if run.distributed else "no (local)"

    @admin.display(description="broke")
    def broke_text(self, run):
        return "yes: PipeBreak stopped the run" if run.broke else "no"

    @admin.display(description="children")
    def child_runs(self, run):
        children = self.progress_of(run)["children"]
        total = sum(children.values())
        if not total:
            return "-"
        url = reverse(f"{self.admin_site.name}:datapipe_pipelinerun_changelist")
        query = urlencode({"runs": "all", "parent": run.pk})
        unfinished = by_status({status: n for status, n in children.items()
                                if status != PipelineRun.Status.DONE})
        return format_html('<a href="{}?{}">{}</a>{}', url, query, total,
                           f" ({unfinished})" if unfinished else "")

    @admin.display(description="elapsed")
    def elapsed_seconds(self, run):
        return dashboard.eta(self.progress_of(run)["elapsed"])

    @admin.display(description="errors")
    def errors_link(self, run):
        url = reverse(f"{self.admin_site.name}:datapipe_pipelineerror_changelist")
        query = urlencode({"show": "rows", "status": "all", "run": run.pk})
        count = run.error_rows.count()
        return format_html('<a href="{}?{}">{} error rows</a>', url, query, count)

    @admin.display(description="files written")
    def locations_list(self, run):
        """The sinks' files (datapipe.sinks): local and http(s) ones linked."""
        if not run.locations:
            return "-"
        return format_html_join(mark_safe("<br>"), "{}", (
            (_location_link(location),) for location in run.locations))

    # The runs a run started ---------------------------------------------------------------

    @admin.display(description="child runs")
    def children_table(self, run):
        rows = [
            self.child_row(child, level) if child is not None else format_html(
                '<tr><td colspan="8" style="padding-left:{}em">... and {} more</td></tr>',
                level * 1.5 + 0.5, more)
            for level, child, more in run.tree(self.tree_depth, self.children_per_run,
                                               self.tree_rows)
        ]
        if not rows:
            return "-"
        return format_html(
            '<table class="datapipe-children"><thead><tr><th>pipeline</th><th>run</th>'
            "<th>status</th><th>processed</th><th>succeeded</th><th>errored</th>"
            "<th>started</th><th>triggered</th></tr></thead><tbody>{}</tbody></table>",
            format_html_join("", "{}", ((row,) for row in rows)),
        )

    def child_row(self, child, level: int):
        triggered = "no"
        if child.triggered_by_id is not None:
            triggered = format_html('yes, by <a href="{}">#{}</a>',
                                    self.run_url(child.triggered_by_id), child.triggered_by_id)
        return format_html(
            '<tr><td style="padding-left:{}em">{}</td><td><a href="{}">#{}</a></td><td>{}</td>'
            "<td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            level * 1.5 + 0.5, child.pipeline_name, self.run_url(child.pk), child.pk,
            child.status, child.processed, child.succeeded, child.errored,
            f"{timezone.localtime(child.started_at):%Y-%m-%d %H:%M:%S}", triggered,
        )

    @admin.display(description="chunks")
    def chunks_table(self, run):
        chunks = getattr(run, "chunks", None)
        if chunks is None:
            return "-"
        rows = [
            (chunk.index, chunk.status, chunk.worker or "-", chunk.processed, chunk.succeeded,
             chunk.errored, dashboard.duration(chunk.started_at, chunk.finished_at),
             chunk.deliveries_total, chunk.resends)
            for chunk in chunks.order_by("index")[:1000]
        ]
        if not rows:
            return "-"
        return format_html(
            '<table class="datapipe-chunks"><thead><tr><th>chunk</th><th>status</th>'
            "<th>worker</th><th>processed</th><th>succeeded</th><th>errored</th>"
            "<th>duration</th><th>deliveries</th><th>resends</th></tr></thead>"
            "<tbody>{}</tbody></table>",
            format_html_join("", "<tr>" + "<td>{}</td>" * 9 + "</tr>", rows),
        )


def _location_link(location: str):
    """A sink's location, linked when a browser can open it (a local path or http(s))."""
    if location.startswith(("http://", "https://", "file://")):
        return format_html('<a href="{}">{}</a>', location, location)
    if "://" not in location:
        return format_html('<a href="{}">{}</a>', Path(location).resolve().as_uri(), location)
    return location
