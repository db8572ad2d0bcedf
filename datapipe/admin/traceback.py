"""The stored traceback page of an error row, served in a sandbox.

A failure's rendered technical 500 page is stored on a few of its rows (see
``DATAPIPE["TRACEBACK_PAGES_PER_SIGNATURE"]``); a row without one shows its group's
latest. The page is served under a CSP that allows no script, request or form, and is
framed on the row's admin page with ``sandbox``.
"""

from __future__ import annotations

from django.db.models import Q
from django.http import Http404, HttpResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.views.decorators.clickjacking import xframe_options_sameorigin

from ..models import PipelineError

__all__ = ["TRACEBACK_CSP", "TracebackPageMixin", "page_row"]

#: Sent with a stored traceback page: no script, no request, no form, its own origin.
TRACEBACK_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; sandbox"


class TracebackPageMixin:
    """Adds the ``<row>/traceback/`` page to the error admin, and its frame."""

    def traceback(self, row):
        """The stored traceback page of ``row`` in a sandboxed frame, with a link to it."""
        page = page_row(row)
        if page is None:
            return "No rendered traceback stored for this failure."
        url = reverse(f"{self.admin_site.name}:datapipe_pipelineerror_traceback", args=[row.pk])
        note = "" if page.pk == row.pk else f" (rendered for row {page.pk} of this failure)"
        return format_html(
            '<iframe sandbox src="{}" title="traceback" class="datapipe-traceback" '
            'style="width:100%;height:75vh;border:1px solid #ccc"></iframe>'
            '<p><a href="{}" target="_blank" rel="noopener">Open the traceback page</a>{}</p>',
            url, url, note,
        )

    def get_urls(self):
        view = self.admin_site.admin_view(self.traceback_view)
        return [
            path("<path:object_id>/traceback/", view, name="datapipe_pipelineerror_traceback"),
            *super().get_urls(),
        ]

    @xframe_options_sameorigin
    def traceback_view(self, request, object_id):
        """The stored technical 500 page of a row, sandboxed by its CSP."""
        row = self.get_object(request, object_id)
        if row is None or not self.has_view_permission(request, row):
            raise Http404("No such error row")
        page = page_row(row)
        if page is None:
            raise Http404("No rendered traceback stored for this failure")
        response = HttpResponse(page.traceback_html, content_type="text/html; charset=utf-8")
        response["Content-Security-Policy"] = TRACEBACK_CSP
        response["X-Content-Type-Options"] = "nosniff"
        response["Referrer-Policy"] = "no-referrer"
        return response


def page_row(row) -> PipelineError | None:
    """The row whose stored page shows ``row``'s failure: itself, else its group's latest."""
    if row.traceback_html:
        return row
    return (
        PipelineError.objects.using(row._state.db)
        .filter(pipeline_name=row.pipeline_name, signature=row.signature)
        .exclude(Q(traceback_html="") | Q(traceback_html__isnull=True))
        .order_by("-last_seen", "-pk")
        .first()
    )
