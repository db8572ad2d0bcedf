"""The charts of the landing page: items processed and errored per pipeline over time,
drawn as SVG on the server by pygal (the ``admin`` extra).

A chart is an image (``<img src=...svg>``) served by the admin, so the page holds no
script or style of the chart and works offline and under a strict Content Security
Policy. Without pygal the landing page says how to get the charts and shows the rest.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta

from django.utils import timezone

__all__ = ["CHARTS", "MEASURES", "SPANS", "available", "buckets", "render", "series"]

MEASURES = ("processed", "errored")
#: span name -> (unit of a bar, number of bars)
SPANS = {"24h": ("hour", 24), "30d": ("day", 30)}
#: The charts of the landing page: measure, span, title.
CHARTS = [
    ("processed", "24h", "Items processed per hour, last 24 hours"),
    ("errored", "24h", "Items errored per hour, last 24 hours"),
    ("processed", "30d", "Items processed per day, last 30 days"),
    ("errored", "30d", "Items errored per day, last 30 days"),
]
#: Pipelines drawn one by one; the others are summed as "others".
PIPELINES_DRAWN = 8


def available() -> bool:
    """Whether pygal is installed (``pip install datapipe[admin]``)."""
    try:
        import pygal  # noqa: F401
    except ImportError:
        return False
    return True


def buckets(span: str, now=None) -> list:
    """The starts of the bars of ``span`` in the current time zone, oldest first."""
    unit, count = SPANS[span]
    now = timezone.localtime(now)
    if unit == "hour":
        last = now.replace(minute=0, second=0, microsecond=0)
        return [last - timedelta(hours=n) for n in range(count - 1, -1, -1)]
    last = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return [last - timedelta(days=n) for n in range(count - 1, -1, -1)]


def _key(moment, unit: str):
    moment = timezone.localtime(moment)
    return (moment.date(), moment.hour) if unit == "hour" else moment.date()


def series(runs, measure: str, span: str, now=None) -> tuple[list, dict[str, list[int]]]:
    """The bars of a chart: ``(bucket starts, {pipeline: [value per bucket]})``, from
    one query (:meth:`~datapipe.models.runs.RunQuerySet.throughput`)."""
    unit = SPANS[span][0]
    starts = buckets(span, now)
    index = {_key(start, unit): n for n, start in enumerate(starts)}
    values: dict[str, list[int]] = defaultdict(lambda: [0] * len(starts))
    for row in runs.order_by().throughput(starts[0], unit):
        slot = index.get(_key(row["period"], unit))
        if slot is not None and row[measure]:
            values[row["pipeline_name"]][slot] += row[measure]
    ranked = sorted(values, key=lambda name: (-sum(values[name]), name))
    # Drawn in name order, so that a pipeline keeps its colour from chart to chart.
    drawn = {name: values[name] for name in sorted(ranked[:PIPELINES_DRAWN])}
    if len(ranked) > PIPELINES_DRAWN:
        others = [values[name] for name in ranked[PIPELINES_DRAWN:]]
        drawn["others"] = [sum(column) for column in zip(*others, strict=True)]
    return starts, drawn


def render(runs, measure: str, span: str, now=None) -> str:
    """The chart of ``measure`` per pipeline over ``span`` as an SVG document."""
    starts, drawn = series(runs, measure, span, now)
    unit = SPANS[span][0]
    labels = [f"{start:%H:00}" if unit == "hour" else f"{start:%m-%d}" for start in starts]
    if not available():
        return _placeholder("Charts need pygal: pip install 'datapipe[admin]'")
    import pygal
    from pygal.style import CleanStyle

    chart = pygal.StackedBar(
        js=[], width=620, height=300, style=CleanStyle, legend_box_size=10,
        x_label_rotation=0, show_minor_x_labels=False,
        x_labels_major_every=3 if unit == "hour" else 5, truncate_legend=30, truncate_label=-1,
        no_data_text=f"no items {measure}", print_values=False, margin=8,
    )
    chart.x_labels = labels
    for name, values in drawn.items():
        chart.add(name, values)
    return chart.render(is_unicode=True)


def _placeholder(text: str) -> str:
    from xml.sax.saxutils import escape

    return ('<svg xmlns="http://www.w3.org/2000/svg" width="620" height="60">'
            f'<text x="10" y="35" font-family="sans-serif" font-size="14">{escape(text)}</text>'
            "</svg>")
