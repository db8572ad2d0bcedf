"""``datapipe errors`` and ``datapipe reprocess``: the collected errors, grouped by
failure, and their items run again."""

from __future__ import annotations

from ..errors.groups import group_rows
from ..errors.reprocess import reprocess
from ..models import PipelineError
from .base import CommandFailed, Subcommand, UsageError, table
from .run import allow_errors_argument, check_errors, errored_in
from .status import when

__all__ = ["Errors", "Reprocess"]


class Errors(Subcommand):
    """``datapipe errors [--pipeline P] [--all] [--json]``.

    JSON: ``{"pipeline": "flow" or null, "all": false, "groups": [{"signature",
    "pipeline", "error_type", "message", "rows", "open_rows", "items", "first_seen",
    "last_seen"}, ...]}``: one group per failure (pipeline and signature), the latest
    seen first; ``message`` is the latest row's, times are ISO 8601.
    """

    name = "errors"
    help = "Collected errors, one line per failure."
    description = ("The collected errors grouped by failure (pipeline and signature), the "
                   "latest seen first: signature, pipeline, open rows, items, first and last "
                   "seen, and the error. Open errors only, unless --all.")
    json = True

    @classmethod
    def add_arguments(cls, parser) -> None:
        parser.add_argument("--pipeline", help="Only this pipeline's errors.")
        parser.add_argument("--all", action="store_true", help="Resolved errors too.")

    def document(self, pipeline, all, **options) -> dict:
        rows = PipelineError.objects.all() if all else PipelineError.objects.filter(resolved=False)
        if pipeline:
            rows = rows.filter(pipeline_name=pipeline)
        groups = [
            {"signature": g.signature, "pipeline": g.pipeline_name, "error_type": g.error_type,
             "message": g.error_message, "rows": g.group_rows, "open_rows": g.open_rows,
             "items": g.items, "first_seen": when(g.group_first_seen),
             "last_seen": when(g.group_last_seen)}
            for g in group_rows(rows)
        ]
        return {"pipeline": pipeline, "all": all, "groups": groups}

    def render(self, document, **options) -> None:
        if not document["groups"]:
            self.say("No errors." if document["all"] else "No open errors.")
            return
        lines = [
            [g["signature"][:12], g["pipeline"], g["open_rows"], g["items"],
             minutes(g["first_seen"]), minutes(g["last_seen"]),
             f"{g['error_type']}: {g['message']}"[:80]]
            for g in document["groups"]
        ]
        self.say(table(["signature", "pipeline", "open", "items", "first seen", "last seen",
                        "error"], lines))
        self.say("\nReprocess a failure with `manage.py datapipe reprocess --signature SIG`.")


def minutes(iso: str) -> str:
    """An ISO 8601 timestamp as ``2025-01-31 12:34``."""
    return iso[:16].replace("T", " ")


class Reprocess(Subcommand):
    """``datapipe reprocess (--signature S | --pipeline P | --id N) [--celery [--queue Q]]
    [--allow-errors]``: exit status 1 when no open row matches, or when items errored
    again (locally), unless ``--allow-errors``."""

    name = "reprocess"
    help = "Run the items of open error rows again."
    description = ("Run the items of open error rows again, each under its pipeline; the rows "
                   "of items that succeed are resolved. Choose the rows by failure signature "
                   "(or its first characters), by pipeline or by id. Exit status 1 when items "
                   "error again, unless --allow-errors.")

    @classmethod
    def add_arguments(cls, parser) -> None:
        which = parser.add_mutually_exclusive_group(required=True)
        which.add_argument("--signature", help="A failure's signature (or its first characters).")
        which.add_argument("--pipeline", help="Every open row of this pipeline.")
        which.add_argument("--id", type=int, help="One error row.")
        parser.add_argument("--celery", action="store_true", help="Reprocess on Celery workers.")
        parser.add_argument("--queue", help="The Celery queue (with --celery).")
        allow_errors_argument(parser)

    def handle(self, signature, pipeline, id, celery, queue, allow_errors, **options) -> None:
        if queue and not celery:
            raise UsageError("--queue goes with --celery.")
        rows = PipelineError.objects.filter(resolved=False)
        if signature is not None:
            rows = rows.filter(signature__startswith=signature)
            if len({row[0] for row in rows.values_list("signature").distinct()[:2]}) > 1:
                raise UsageError(f"Signature {signature!r} matches several failures: "
                                 "give more characters.")
        elif pipeline is not None:
            rows = rows.filter(pipeline_name=pipeline)
        else:
            rows = rows.filter(pk=id)
        if not rows.exists():
            raise CommandFailed("No open error rows match.")
        result = reprocess(rows, in_celery=celery, queue=queue)
        self.say(str(result))
        for handle in result.handles:
            self.say(f"Follow run {handle.id} with `manage.py datapipe status {handle.id}`.")
        errored = sum(errored_in(report) for outcome in result.pipelines.values()
                      for report in outcome.reports)
        check_errors(errored, allow_errors, "Reprocessing")
