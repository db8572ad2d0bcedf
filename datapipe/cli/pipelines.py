"""``datapipe list``: the registered pipelines with their depends and triggers."""

from __future__ import annotations

from ..registry import registry
from .base import Subcommand, table

__all__ = ["ListPipelines"]


class ListPipelines(Subcommand):
    """``datapipe list [--json]``.

    JSON: ``{"pipelines": [{"name": "flow", "depends": [], "triggers": ["flow.derived"],
    "triggered_by": []}, ...]}``, by name.
    """

    name = "list"
    help = "Pipelines with their depends and triggers."
    description = ("Every registered pipeline, by name, with the pipelines it depends on "
                   "(run before it on the same items), the pipelines it triggers (run on its "
                   "results after each run) and the pipelines that trigger it.")
    json = True

    def document(self, **options) -> dict:
        return {"pipelines": [
            {"name": name, "depends": list(registry.depends_of(name)),
             "triggers": list(registry.triggers_of(name)),
             "triggered_by": list(registry.triggered_by(name))}
            for name in registry.names()
        ]}

    def render(self, document, **options) -> None:
        rows = [[p["name"], ", ".join(p["depends"]) or "-", ", ".join(p["triggers"]) or "-",
                 ", ".join(p["triggered_by"]) or "-"] for p in document["pipelines"]]
        self.say(table(["pipeline", "depends on", "triggers", "triggered by"], rows))
