"""Template tags of the datapipe admin: the landing page and the counts on the admin index.

``{% load datapipe_admin %}``, then ``{% datapipe_landing_page %}`` (the body of
``/admin/datapipe/``) or ``{% datapipe_counts %}`` (runs running, open error groups;
put it in a project's own admin index template).
"""

from django import template

__all__ = ["datapipe_counts", "datapipe_landing_page"]

register = template.Library()


@register.inclusion_tag("datapipe/admin/landing_page.html", takes_context=True)
def datapipe_landing_page(context):
    """Runs in progress, charts, open error groups, stale runs, workers seen lately."""
    from ..admin.dashboard import landing_page

    request = context["request"]
    return {"request": request, "csrf_token": context.get("csrf_token"),
            **landing_page(request)}


@register.inclusion_tag("datapipe/admin/index_counts.html", takes_context=True)
def datapipe_counts(context):
    """Runs running (and stale) and open error groups, linking to the landing page."""
    from ..admin.dashboard import index_counts

    return {"counts": index_counts(context["request"])}
