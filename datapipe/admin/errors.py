"""The admin of collected errors: groups, single rows, the traceback page, and actions.

Error rows are read-only. Reprocessing and marking rows resolved need the permission
``datapipe.reprocess_pipelineerror`` ("Can reprocess pipeline errors").

The error change list shows one line per group (same pipeline and signature) by default;
the "show" filter switches to single rows. An action on a group acts on every open row
of that group. A group's page lists the distinct messages it holds, with counts; the
``run`` parameter lists the rows of every item that failed in that run (kept per run,
also after a later run took a row over).
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.admin.options import ShowFacets
from django.contrib.admin.utils import quote
from django.contrib.admin.views.main import ORDER_VAR, ChangeList
from django.core.exceptions import ValidationError
from django.template.defaultfilters import truncatechars
from django.urls import NoReverseMatch, reverse
from django.utils import formats, timezone
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode

from ..errors.groups import group_messages, group_rows, rows_of_groups
from ..errors.reprocess import reprocess
from ..exceptions import DatapipeError
from ..models import PipelineError
from .filters import ChoiceFilter
from .lineage import can_view_lineage, lineage_url
from .readonly import ReadOnlyMixin
from .traceback import TracebackPageMixin

__all__ = ["PipelineErrorAdmin"]

REPROCESS_PERMISSION = "datapipe.reprocess_pipelineerror"


# Filters ------------------------------------------------------------------------------------


class ShowFilter(ChoiceFilter):
    """Error groups (the default) or single rows."""

    title = "show"
    parameter_name = "show"
    default_label = "Error groups"

    def lookups(self, request, model_admin):
        return [("rows", "Single rows")]

    def queryset(self, request, queryset):
        return queryset  # read by PipelineErrorAdmin.showing_rows


class StatusFilter(ChoiceFilter):
    """Open rows (the default), resolved rows, or all."""

    title = "status"
    parameter_name = "status"
    default_label = "Open"

    def lookups(self, request, model_admin):
        return [("resolved", "Resolved"), ("missing", "Item missing"), ("all", "All")]

    def queryset(self, request, queryset):
        value = self.value()
        if value == "all":
            return queryset
        if value == "missing":
            return queryset.filter(resolved=False, item_missing=True)
        return queryset.filter(resolved=value == "resolved")


class RunFilter(admin.SimpleListFilter):
    """The rows of the items that failed in one run (``?run=<id>``), linked from its page."""

    title = "run"
    parameter_name = "run"

    def lookups(self, request, model_admin):
        value = self.value()
        return [(value, f"run #{value}")] if value and value.isdigit() else []

    def queryset(self, request, queryset):
        value = self.value()
        if value and value.isdigit():
            return queryset.filter(occurrences__run=int(value))
        return queryset


class ErrorChangeList(ChangeList):
    """Filters and searches rows, then shows groups of them unless single rows are asked for."""

    def get_queryset(self, request, exclude_parameters=None):
        rows = super().get_queryset(request, exclude_parameters)
        if self.model_admin.showing_rows(request):
            return rows
        groups = group_rows(rows)
        if ORDER_VAR in self.params:  # a column the operator sorted by
            groups = groups.order_by(*self.get_ordering(request, groups))
        return groups

    def get_ordering(self, request, queryset):
        if not self.model_admin.showing_rows(request) and (
                "open_rows" not in queryset.query.annotations):
            return ["-pk"]  # rows about to be grouped: the groups' figures sort them after
        return super().get_ordering(request, queryset)


# Errors -------------------------------------------------------------------------------------


class PipelineErrorAdmin(TracebackPageMixin, ReadOnlyMixin, admin.ModelAdmin):
    """Collected errors: groups, rows, the rendered traceback, and what to do with them."""

    list_filter = [ShowFilter, StatusFilter, "pipeline_name", "error_type", RunFilter]
    search_fields = ["item_id", "item_repr", "error_message"]
    actions = ["reprocess_locally", "reprocess_in_celery", "mark_resolved"]
    show_full_result_count = False
    show_facets = ShowFacets.NEVER
    list_per_page = 50
    change_form_template = "datapipe/admin/pipelineerror_change_form.html"
    #: The Celery queue of "Reprocess in Celery" (None: Celery's default queue).
    celery_queue: str | None = None
    fieldsets = [
        (None, {"fields": [
            "error", "pipeline_name", "item", "item_value", "status", "attempts",
            "first_seen", "last_seen", "revision", "run_link",
        ]}),
        ("This failure", {"fields": ["group", "messages_table"]}),
        ("Stack", {"fields": ["frames_table"]}),
    ]
    readonly_fields = ["error", "item", "status", "run_link", "group", "messages_table",
                       "frames_table"]
    #: At most this many distinct messages of a group listed on its page.
    messages_shown = 20

    class Media:
        css = {"all": ["datapipe/admin.css"]}

    def has_reprocess_permission(self, request):
        """Reprocessing and resolving need ``datapipe.reprocess_pipelineerror``."""
        return request.user.has_perm(REPROCESS_PERMISSION)

    # The change list ----------------------------------------------------------------------

    @staticmethod
    def showing_rows(request) -> bool:
        """Whether the change list shows single rows rather than groups."""
        return request.GET.get(ShowFilter.parameter_name) == "rows"

    def get_changelist(self, request, **kwargs):
        return ErrorChangeList

    def changelist_view(self, request, extra_context=None):
        title = "Error rows" if self.showing_rows(request) else "Failures: one line per error group"
        return super().changelist_view(request, {"title": title, **(extra_context or {})})

    def get_list_display(self, request):
        if self.showing_rows(request):
            return ["item_short", "pipeline_name", "error_short", "attempts", "status",
                    "last_seen"]
        return ["error_short", "pipeline_name", "open_rows", "items_affected", "messages_count",
                "first_seen_in_group", "last_seen_in_group", "rows_link"]

    def get_list_display_links(self, request, list_display):
        return [list_display[0]]

    @admin.display(description="error", ordering="error_type")
    def error_short(self, row):
        text = truncatechars(f"{row.error_type}: {row.error_message}", 120)
        others = getattr(row, "messages", 1) - 1  # a group's other messages
        return f"{text} (+{others} other message{'s' * (others > 1)})" if others > 0 else text

    @admin.display(description="item", ordering="item_repr")
    def item_short(self, row):
        return truncatechars(row.item_repr, 80)

    @admin.display(description="open rows", ordering="open_rows")
    def open_rows(self, row):
        return row.open_rows

    @admin.display(description="items affected", ordering="items")
    def items_affected(self, row):
        return row.items

    @admin.display(description="messages", ordering="messages")
    def messages_count(self, row):
        return row.messages

    @admin.display(description="first seen", ordering="group_first_seen")
    def first_seen_in_group(self, row):
        return row.group_first_seen

    @admin.display(description="last seen", ordering="group_last_seen")
    def last_seen_in_group(self, row):
        return row.group_last_seen

    @admin.display(description="rows", ordering="group_rows")
    def rows_link(self, row):
        return format_html('<a href="{}">{} rows</a>', self.group_url(row), row.group_rows)

    def group_url(self, row) -> str:
        """The change list of the single rows in the group of ``row``."""
        query = {"show": "rows", "status": "all", "pipeline_name": row.pipeline_name,
                 "signature": row.signature}
        url = reverse(f"{self.admin_site.name}:datapipe_pipelineerror_changelist")
        return f"{url}?{urlencode(query)}"

    # The detail page ----------------------------------------------------------------------

    @admin.display(description="error")
    def error(self, row):
        return f"{row.error_type}: {row.error_message}"

    @admin.display(description="status")
    def status(self, row):
        if row.resolved:
            when = f" at {row.resolved_at:%Y-%m-%d %H:%M:%S}" if row.resolved_at else ""
            return f"resolved{when}"
        return "open, item missing" if row.item_missing else "open"

    @admin.display(description="item")
    def item(self, row):
        url = self.item_admin_url(row)
        if url is None:
            return row.item_repr
        return format_html('<a href="{}">{}</a>', url, row.item_repr)

    def item_admin_url(self, row) -> str | None:
        """The admin page of the row's item, when its model has one."""
        if row.item_content_type_id is None or row.item_id is None or row.item_missing:
            return None
        model = row.item_content_type.model_class()
        if model is None or not self.admin_site.is_registered(model):
            return None
        opts = model._meta
        try:
            return reverse(
                f"{self.admin_site.name}:{opts.app_label}_{opts.model_name}_change",
                args=[quote(row.item_id)],
            )
        except NoReverseMatch:
            return None

    def item_lineage_url(self, request, row) -> str | None:
        """The lineage page of the row's item, when it is a model row that still exists."""
        if row.item_content_type_id is None or row.item_id is None:
            return None
        model = row.item_content_type.model_class()
        if model is None or not can_view_lineage(request.user):
            return None
        try:
            if not model._base_manager.using(row._state.db).filter(pk=row.item_id).exists():
                return None
        except (ValueError, ValidationError):  # an id its model cannot read
            return None
        return lineage_url(model, row.item_id, self.admin_site.name)

    @admin.display(description="run")
    def run_link(self, row):
        if row.run_id is None:
            return "-"
        url = reverse(f"{self.admin_site.name}:datapipe_pipelinerun_change", args=[row.run_id])
        return format_html('<a href="{}">{}</a>', url, row.run)

    @admin.display(description="group")
    def group(self, row):
        figures = group_rows(PipelineError.objects.using(row._state.db).filter(
            pipeline_name=row.pipeline_name, signature=row.signature)).get()
        return format_html(
            '{} open rows of {}, {} items affected, first seen {}, last seen {}. '
            '<a href="{}">See the rows</a>. Signature <code>{}</code>.',
            figures.open_rows, figures.group_rows, figures.items,
            _when(figures.group_first_seen), _when(figures.group_last_seen),
            self.group_url(row), row.signature,
        )

    @admin.display(description="messages")
    def messages_table(self, row):
        rows = PipelineError.objects.using(row._state.db).filter(
            pipeline_name=row.pipeline_name, signature=row.signature)
        messages_ = group_messages(rows, self.messages_shown)
        body = format_html_join(
            "", '<tr><td><a href="{}">{}</a></td><td>{}</td><td>{}</td></tr>',
            ((self.message_url(row, message), message or "(no message)", n, open_)
             for message, n, open_ in messages_),
        )
        return format_html(
            '<table class="datapipe-messages"><thead><tr><th>message</th><th>rows</th>'
            "<th>open rows</th></tr></thead><tbody>{}</tbody></table>", body)

    def message_url(self, row, message: str) -> str:
        """The single rows of the group of ``row`` with ``message``."""
        return f"{self.group_url(row)}&{urlencode({'error_message': message})}"

    @admin.display(description="frames")
    def frames_table(self, row):
        if not row.frames:
            return "-"
        body = format_html_join(
            "", "<tr><td><code>{}</code></td><td>{}</td><td><code>{}</code></td>"
            "<td><code>{}</code></td></tr>",
            ((f.get("file", ""), f.get("line", ""), f.get("function", ""), f.get("code", ""))
             for f in row.frames),
        )
        return format_html(
            '<table class="datapipe-frames"><thead><tr><th>file</th><th>line</th>'
            "<th>function</th><th>code</th></tr></thead><tbody>{}</tbody></table>", body
        )

    def render_change_form(self, request, context, add=False, change=False, form_url="",
                           obj=None):
        if obj is not None:
            changelist = reverse(f"{self.admin_site.name}:datapipe_pipelineerror_changelist")
            context.update(
                can_reprocess=self.has_reprocess_permission(request),
                group_url=self.group_url(obj),
                row_url=f"{changelist}?{urlencode({'show': 'rows', 'status': 'all'})}",
                traceback_frame=self.traceback(obj),
                lineage_url=self.item_lineage_url(request, obj),
            )
        return super().render_change_form(request, context, add, change, form_url, obj)

    # Actions ----------------------------------------------------------------------------------

    def open_rows_of(self, request, queryset):
        """The open rows an action applies to: every open row of the selected groups."""
        if self.showing_rows(request):
            return queryset.model._default_manager.filter(
                pk__in=list(queryset.values_list("pk", flat=True)), resolved=False
            )
        return rows_of_groups(queryset)

    @admin.action(description="Reprocess locally", permissions=["reprocess"])
    def reprocess_locally(self, request, queryset):
        self._reprocess(request, queryset, in_celery=False)

    @admin.action(description="Reprocess in Celery", permissions=["reprocess"])
    def reprocess_in_celery(self, request, queryset):
        self._reprocess(request, queryset, in_celery=True)

    def _reprocess(self, request, queryset, in_celery):
        from ..session import get_session

        rows = self.open_rows_of(request, queryset)
        try:
            result = reprocess(rows, in_celery=in_celery, queue=self.celery_queue,
                               session=get_session(progress=False))
        except (DatapipeError, OSError) as exc:
            self.message_user(request, f"Could not reprocess: {exc}", messages.ERROR)
            return
        for outcome in result.pipelines.values():
            ok = outcome.handles or (outcome.still_open == 0 and outcome.missing == 0)
            self.message_user(request, str(outcome), messages.SUCCESS if ok else messages.WARNING)
        if not result.pipelines:
            self.message_user(request, "No open rows to reprocess.", messages.INFO)

    @admin.action(description="Mark resolved", permissions=["reprocess"])
    def mark_resolved(self, request, queryset):
        count = self.open_rows_of(request, queryset).update(
            resolved=True, resolved_at=timezone.now()
        )
        self.message_user(request, f"{count} rows marked resolved.", messages.SUCCESS)


def _when(moment) -> str:
    return formats.localize(timezone.localtime(moment)) if moment else "-"
