"""The admin of run records: root runs with their progress, and each run's tree of child runs.

Run records are read-only. The change list shows the runs a caller started (root runs)
by default; the "runs" filter shows every run. A run's page lists the runs it started
(its depends, its triggers, the runs started inside its Celery chunks), nested, and
links to the lineage of its items (those with error rows, then those it tracked).

Progress figures come from :meth:`PipelineRun.progress`, the one computation of them.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode

from ..exceptions import DatapipeError
from ..models import PipelineError, PipelineRun
from ..models.runs import by_status
from .filters import ChoiceFilter
from .lineage import can_view_lineage, items_of_run, lineage_url
from .readonly import ReadOnlyMixin

__all__ = ["PipelineRunAdmin", "RunsFilter"]


class RunsFilter(ChoiceFilter):
    """Root runs (the default: the runs no other run started) or all runs."""

    title = "runs"
    parameter_name = "runs"
    default_label = "Root runs"

    def lookups(self, request, model_admin):
        return [("all", "All runs")]

    def queryset(self, request, queryset):
        return queryset if self.value() == "all" else queryset.roots()


class PipelineRunAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """Run records, read-only: status, counts, timings, progress and child runs."""

    list_display = ["__str__", "pipeline_name", "run_status", "distributed", "progress",
                    "child_runs", "processed", "succeeded", "continued", "ignored", "errored",
                    "started_at", "elapsed_seconds"]
    list_filter = [RunsFilter, "status", "distributed", "pipeline_name"]
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
    readonly_fields = ["run_status", "progress", "elapsed_seconds", "errors_link", "children_table",
                       "chunks_table"]
    fields = [
        "pipeline_name", "run_status", "distributed", "parent", "triggered_by", "progress",
        ("processed", "succeeded", "continued", "ignored", "errored", "broke"),
        "message", "started_at", "finished_at", "elapsed_seconds", "errors_link",
        "children_table", "chunks_table",
    ]


    def has_resend_permission(self, request):
        opts = self.opts
        return request.user.has_perm(f"{opts.app_label}.resend_pipelinerun")

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

    @admin.display(description="status", ordering="status")
    def run_status(self, run):
        if self.progress_of(run)["stale"]:
            return format_html('<strong style="color:#ba2121">{} (stale)</strong>', run.status)
        return run.status

    @admin.display(description="progress")
    def progress(self, run):
        progress = self.progress_of(run)
        fraction = progress["fraction"]
        if fraction is None:  # a local run that is running: no chunks to count
            return f"{progress['processed']} processed, {progress['errored']} errored so far"
        chunks = (f" ({progress['chunks_done']}/{progress['chunks_total']} chunks)"
                  if progress["distributed"] else "")
        return format_html('<progress value="{}" max="1"></progress> {}%{}',
                           f"{fraction:.3f}", f"{fraction * 100:.0f}", chunks)

    @admin.display(description="child runs")
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

    @admin.display(description="elapsed (s)")
    def elapsed_seconds(self, run):
        progress = self.progress_of(run)
        running = "" if progress["finished"] else " (running)"
        return f"{progress['elapsed']:.1f}{running}"

    @admin.display(description="errors")
    def errors_link(self, run):
        url = reverse(f"{self.admin_site.name}:datapipe_pipelineerror_changelist")
        query = urlencode({"show": "rows", "status": "all", "run": run.pk})
        count = PipelineError.objects.using(run._state.db).filter(run=run).count()
        return format_html('<a href="{}?{}">{} error rows</a>', url, query, count)

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
            (chunk.index, chunk.status, chunk.processed, chunk.succeeded, chunk.continued,
             chunk.ignored, chunk.errored)
            for chunk in chunks.order_by("index")[:1000]
        ]
        if not rows:
            return "-"
        return format_html(
            "<table><thead><tr><th>chunk</th><th>status</th><th>processed</th>"
            "<th>succeeded</th><th>continued</th><th>ignored</th><th>errored</th></tr></thead>"
            "<tbody>{}</tbody></table>",
            format_html_join("", "<tr>" + "<td>{}</td>" * 7 + "</tr>", rows),
        )
