"""Schedules of pipelines: ``@pipeline(name, schedule=...)``.

A schedule is a cron string (``"*/15 * * * *"``: minute, hour, day of month, month, day
of week), a :class:`~datetime.timedelta`, or a Celery schedule. ``celery beat`` is the
scheduler: :func:`datapipe.celery.configure` puts each scheduled pipeline in the app's
``beat_schedule`` as ``datapipe:<name>``, sending the task ``datapipe.scheduled``; the
runs themselves are :mod:`datapipe.scheduled`'s.
"""

from __future__ import annotations

from datetime import timedelta

from celery.schedules import crontab
from celery.schedules import schedule as every

from .exceptions import PipelineDefinitionError

__all__ = ["as_schedule", "describe"]


def as_schedule(value, name: str = "?"):
    """The Celery schedule of ``value`` (a cron string, a timedelta or a Celery
    schedule); :class:`PipelineDefinitionError` naming the pipeline and the value
    otherwise."""
    if isinstance(value, every):  # crontab and solar are schedules too
        return value
    if isinstance(value, timedelta):
        if value <= timedelta(0):
            raise PipelineDefinitionError(
                f"Pipeline {name!r}: schedule={value!r} must be a positive timedelta")
        return every(run_every=value)
    if isinstance(value, str):
        fields = value.split()
        if len(fields) != 5:
            raise PipelineDefinitionError(
                f"Pipeline {name!r}: schedule={value!r} is not a cron string: five fields "
                "are needed (minute hour day-of-month month day-of-week), e.g. '*/15 * * * *'")
        minute, hour, day_of_month, month_of_year, day_of_week = fields
        try:
            return crontab(minute=minute, hour=hour, day_of_month=day_of_month,
                           month_of_year=month_of_year, day_of_week=day_of_week)
        except Exception as exc:
            raise PipelineDefinitionError(
                f"Pipeline {name!r}: schedule={value!r} is not a valid cron string: {exc}"
            ) from None
    raise PipelineDefinitionError(
        f"Pipeline {name!r}: schedule must be a cron string, a timedelta or a Celery "
        f"schedule, not {value!r}")


def describe(value) -> str:
    """A schedule as people read it: the cron fields, or ``every 90 seconds``."""
    if isinstance(value, crontab):
        return " ".join(str(getattr(value, f"_orig_{part}")) for part in (
            "minute", "hour", "day_of_month", "month_of_year", "day_of_week"))
    if type(value) is every:
        return f"every {value.run_every.total_seconds():g} seconds"
    return repr(value)
