"""The datapipe landing page of the admin (``/admin/datapipe/``) and the counts on the
admin index: runs in progress, charts, open error groups with their trend, stale runs,
workers seen lately.

The page is the app index Django gives the app, extended by the template
``admin/datapipe/app_index.html`` through the ``datapipe_admin`` template tags; its
live table polls :func:`live_response` (served by :class:`~.runs.PipelineRunAdmin`) from
``datapipe/dashboard.js``, a static file: the page has no inline script.

Also the cells that the run list and the landing page share (:func:`status_badge`,
:func:`progress_cell`, :func:`rate`, :func:`eta`, :func:`duration`).
"""

from __future__ import annotations

from datetime import timedelta

from django.contrib.admin.sites import all_sites
from django.contrib.admin.sites import site as default_site
from django.http import HttpResponse, JsonResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from ..errors.groups import group_rows, group_trend
from ..models import PipelineChunk, PipelineError, PipelineRun
from . import charts

__all__ = [
    "chart_response", "duration", "eta", "index_counts", "landing_page", "live_response",
    "pipeline_cell", "progress_cell", "rate", "status_badge",
]

#: Runs in progress listed (and polled), error groups listed, workers listed.
RUNS_SHOWN = 20
GROUPS_SHOWN = 10
WORKERS_SHOWN = 20
#: A worker counts as "seen lately" for this long after its last chunk's sign of life.
WORKERS_SEEN_WITHIN = timedelta(hours=1)
#: Days of an error group's trend.
TREND_DAYS = 7
#: Seconds between two polls of the live table.
REFRESH_SECONDS = 5


# Cells ----------------------------------------------------------------------------------------


def status_text(progress: dict) -> tuple[str, str]:
    """The status of a run as an operator reads it, and its kind (a CSS class suffix):
    ``"done, 12 errored"`` is not clean, ``"running (stale)"`` needs a hand."""
    status, errored = progress["status"], progress["errored"]
    if progress["stale"]:
        return f"{status} (stale)", "stale"
    if status == PipelineRun.Status.FAILED:
        return status, "failed"
    if errored:
        return f"{status}, {errored} errored", "errors"
    return status, status


def status_badge(progress: dict):
    """:func:`status_text` as a badge whose colour tells a clean run from others."""
    text, kind = status_text(progress)
    return format_html('<span class="datapipe-status datapipe-status-{}">{}</span>', kind, text)


def pipeline_cell(name: str):
    """A pipeline's name that a narrow column may break after its dots."""
    return format_html_join(mark_safe(".<wbr>"), "{}", ((part,) for part in name.split(".")))


def progress_text(progress: dict) -> str:
    """Progress in words: chunks for a distributed run, counts so far for a running
    local run (whose total is unknown), nothing for a finished local run."""
    if progress["distributed"]:
        return (f"{progress['fraction'] * 100:.0f}% "
                f"({progress['chunks_done']}/{progress['chunks_total']} chunks)")
    if not progress["finished"]:
        return f"{progress['processed']} processed, {progress['errored']} errored so far"
    return "-"


def progress_cell(progress: dict):
    """:func:`progress_text`, with a bar for a distributed run."""
    if not progress["distributed"]:
        return progress_text(progress)
    return format_html('<progress value="{}" max="1"></progress> {}',
                       f"{progress['fraction']:.3f}", progress_text(progress))


def rate(items_per_second: float) -> str:
    """Items per second, as shown in a column."""
    if not items_per_second:
        return "-"
    return f"{items_per_second:,.0f}" if items_per_second >= 100 else f"{items_per_second:.1f}"


def eta(seconds: float | None) -> str:
    """A time span (left, or elapsed) rounded for reading (``"4 min"``), or ``"-"`` when
    unknown."""
    if seconds is None:
        return "-"
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def duration(started, finished) -> str:
    """Seconds from ``started`` to ``finished`` (``"-"`` when either is missing)."""
    if started is None or finished is None:
        return "-"
    return eta((finished - started).total_seconds())


# Runs in progress -----------------------------------------------------------------------------


def running_runs(runs) -> list[dict]:
    """The root runs in progress among ``runs``, as rows of the live table."""
    running = list(runs.roots().filter(status=PipelineRun.Status.RUNNING)[:RUNS_SHOWN])
    figures = PipelineRun.progress_of(running)
    return [live_row(run, figures[run.pk]) for run in running]


def live_row(run, progress: dict) -> dict:
    """One run of the live table: what the template and the polling script show."""
    text, kind = status_text(progress)
    return {
        "id": run.pk,
        "pipeline": run.pipeline_name,
        "status": text,
        "kind": kind,
        "distributed": progress["distributed"],
        "fraction": progress["fraction"],
        "progress": progress_text(progress),
        "processed": progress["processed"],
        "errored": progress["errored"],
        "rate": rate(progress["items_per_second"]),
        "eta": eta(progress["eta"]),
        "started": timezone.localtime(run.started_at).strftime("%Y-%m-%d %H:%M:%S"),
    }


def live_response(runs, site_name: str) -> JsonResponse:
    """JSON of the runs in progress among ``runs``: ``{"runs": [...], "url": ...}``,
    ``url`` being a run's admin page with ``0`` for its id."""
    return JsonResponse({
        "runs": running_runs(runs),
        "url": reverse(f"{site_name}:datapipe_pipelinerun_change", args=[0]),
        "at": timezone.now().isoformat(),
    })


def chart_response(runs, measure: str, span: str) -> HttpResponse:
    """A chart of ``measure`` (``processed`` or ``errored``) per pipeline over ``span``
    (``24h`` or ``30d``) as an SVG image: served on its own, under a policy that runs
    none of its scripts."""
    if measure not in charts.MEASURES or span not in charts.SPANS:
        return HttpResponse(status=404)
    svg = charts.render(runs, measure, span)
    response = HttpResponse(svg, content_type="image/svg+xml; charset=utf-8")
    response["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'"
    response["Cache-Control"] = "private, max-age=60"
    return response


# The page -----------------------------------------------------------------------------------


def admin_site(request):
    """The admin site serving ``request`` (the default site outside an admin view)."""
    name = getattr(request, "current_app", None)
    return next((s for s in all_sites if s.name == name), default_site)


def model_admin(request, model):
    """The ModelAdmin of ``model`` if the user may view it, else None."""
    registered = admin_site(request)._registry.get(model)
    if registered is None or not registered.has_view_permission(request):
        return None
    return registered


def landing_page(request) -> dict:
    """The context of the landing page, for the user of ``request`` (what they may see)."""
    runs_admin = model_admin(request, PipelineRun)
    errors_admin = model_admin(request, PipelineError)
    name = admin_site(request).name
    context = {"runs_visible": runs_admin is not None, "errors_visible": errors_admin is not None}
    if runs_admin is not None:
        runs = runs_admin.get_queryset(request)
        stale = list(runs.stale().order_by("started_at")[:RUNS_SHOWN])
        context.update(
            running=running_runs(runs),
            live_url=reverse(f"{name}:datapipe_pipelinerun_live"),
            refresh_seconds=REFRESH_SECONDS,
            charts_available=charts.available(),
            charts=[
                {"title": title, "url": reverse(f"{name}:datapipe_pipelinerun_chart",
                                                args=[measure, span])}
                for measure, span, title in charts.CHARTS
            ],
            stale=stale,
            can_resend=runs_admin.has_resend_permission(request),
            workers=list(PipelineChunk.objects.using(runs.db).workers(
                timezone.now() - WORKERS_SEEN_WITHIN)[:WORKERS_SHOWN]),
            workers_within=int(WORKERS_SEEN_WITHIN.total_seconds() // 60),
        )
    if errors_admin is not None:
        context["groups"] = open_groups(errors_admin.get_queryset(request))
    return context


def open_groups(rows) -> list[dict]:
    """The latest open error groups, each with its failures per day (oldest first)."""
    open_rows = rows.filter(resolved=False)
    groups = list(group_rows(open_rows)[:GROUPS_SHOWN])
    since = timezone.localdate() - timedelta(days=TREND_DAYS - 1)
    trends = group_trend(open_rows.filter(
        pipeline_name__in={g.pipeline_name for g in groups},
        signature__in={g.signature for g in groups}), since, TREND_DAYS)
    listed = []
    for group in groups:
        trend = trends.get((group.pipeline_name, group.signature), [0] * TREND_DAYS)
        listed.append({"row": group, "trend": trend, "direction": direction(trend)})
    return listed


def direction(trend: list[int]) -> str:
    """``rising``, ``falling`` or ``steady``: the last day against the days before it."""
    *before, last = trend
    usual = sum(before) / len(before) if before else 0
    if last > usual:
        return "rising"
    return "falling" if last < usual else "steady"


def index_counts(request) -> dict:
    """The counts on the admin index: runs running (and stale), open error groups."""
    counts = {}
    runs_admin = model_admin(request, PipelineRun)
    errors_admin = model_admin(request, PipelineError)
    name = admin_site(request).name
    if runs_admin is not None:
        runs = runs_admin.get_queryset(request)
        counts["running"] = runs.roots().filter(status=PipelineRun.Status.RUNNING).count()
        counts["stale"] = runs.stale().count()
    if errors_admin is not None:
        counts["open_groups"] = errors_admin.get_queryset(request).filter(
            resolved=False).values("pipeline_name", "signature").distinct().count()
    if counts:
        counts["url"] = reverse(f"{name}:app_list", args=["datapipe"])
    return counts
