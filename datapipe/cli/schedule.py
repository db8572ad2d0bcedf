"""``datapipe schedule``: the scheduled pipelines and when each is due."""

from __future__ import annotations

from ..scheduled import listing
from .base import Subcommand, table

__all__ = ["Schedule"]


class Schedule(Subcommand):
    """``datapipe schedule [--json]``.

    JSON: ``{"schedules": [{"pipeline": "rates.refresh", "schedule": "*/15 * * * *",
    "last_run": "2026-11-30T10:15:00+00:00" or null, "next_due": "...", "running":
    false}, ...]}``, by pipeline name.
    """

    name = "schedule"
    help = "Scheduled pipelines and when each is due."
    description = ("The pipelines declared with @pipeline(..., schedule=...): their schedule, "
                   "their latest run, when celery beat sends them next, and whether a "
                   "scheduled run of theirs is running now (the next ones are skipped "
                   "meanwhile).")
    json = True

    def document(self, **options) -> dict:
        return {"schedules": [
            {**row, "last_run": row["last_run"] and row["last_run"].isoformat(),
             "next_due": row["next_due"].isoformat()}
            for row in listing()
        ]}

    def render(self, document, **options) -> None:
        rows = [[row["pipeline"], row["schedule"], row["last_run"] or "-", row["next_due"],
                 "yes" if row["running"] else "no"] for row in document["schedules"]]
        if not rows:
            self.say("No pipeline is scheduled: declare one with @pipeline(..., schedule=...).")
            return
        self.say(table(["pipeline", "schedule", "last run", "next due", "running"], rows))
