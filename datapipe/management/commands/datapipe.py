"""``manage.py datapipe``: list pipelines, run them, follow runs, see and reprocess errors.

Subcommands::

    datapipe list
    datapipe run NAME --model app.Model [--filter field=value ...] [--chunksize N]
                 [--celery [--queue Q] [--wait]]
    datapipe status RUN_ID
    datapipe resend RUN_ID [--stale-after SECONDS] [--queue Q]
    datapipe errors [--pipeline P] [--all]
    datapipe reprocess (--signature S | --pipeline P | --id N) [--celery [--queue Q]]
    datapipe lineage app_label.Model PK [--depth N] [--json]
"""

from __future__ import annotations

import json
import math
import re
import time

from django.apps import apps
from django.core.exceptions import FieldError, ObjectDoesNotExist, ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError, transaction

from datapipe import conf, get_session, registry
from datapipe.errors.groups import group_rows
from datapipe.errors.reprocess import reprocess
from datapipe.exceptions import DatapipeError
from datapipe.lineage import DEPTH, describe, downstream, upstream
from datapipe.models import PipelineError, PipelineRun
from datapipe.models.runs import by_status
from datapipe.report import COUNTS

#: Seconds between two progress polls of ``run --celery --wait``.
POLL_SECONDS = 0.5

#: ``status``: how many levels of child runs are printed,
TREE_DEPTH = 5
#: how many children of one run (the others are counted),
CHILDREN_PER_RUN = 50
#: and how many lines of child runs in all.
TREE_LINES = 500


# Terminal control characters (but newline and tab) and lone surrogates: shown escaped,
# so that text from the data (an exception message) cannot drive the terminal.
_UNPRINTABLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")


def printable(text: str) -> str:
    """``text`` with control characters and lone surrogates escaped (``\\x1b``)."""
    return _UNPRINTABLE.sub(lambda m: ascii(m.group())[1:-1], text)


def seconds(value: str) -> float:
    """An argparse type: a finite number of seconds, 0 or more."""
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not (math.isfinite(number) and number >= 0):
        raise ValueError(value)
    return number


def table(headers: list[str], rows: list[list]) -> str:
    """``rows`` as text columns under ``headers``."""
    cells = [[str(cell) for cell in row] for row in [headers, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
             for row in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


class Command(BaseCommand):
    help = "List and run pipelines, follow runs, list and reprocess collected errors."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="subcommand", required=True, metavar="SUBCOMMAND")

        sub.add_parser("list", help="Pipelines with their depends and triggers.")

        run = sub.add_parser("run", help="Run a pipeline on the rows of a model.")
        run.add_argument("name", help="The pipeline's name.")
        run.add_argument("--model", required=True, help="The items' model, as app_label.Model.")
        run.add_argument("--filter", action="append", default=[], metavar="FIELD=VALUE",
                         help="Keep the rows where FIELD (a lookup, e.g. number__gt) is VALUE; "
                              "repeat for more.")
        run.add_argument("--chunksize", type=int,
                         help="Items per batch locally; items per Celery chunk with --celery.")
        run.add_argument("--celery", action="store_true", help="Run on Celery workers.")
        run.add_argument("--queue", help="The Celery queue (with --celery).")
        run.add_argument("--wait", action="store_true",
                         help="With --celery: show progress until the run is done.")

        status = sub.add_parser("status", help="A run record, its chunks and its child runs.")
        status.add_argument("run_id", type=int)

        resend = sub.add_parser("resend", help="Send a run's failed and lost chunks again.")
        resend.add_argument("run_id", type=int)
        resend.add_argument("--stale-after", type=seconds, metavar="SECONDS",
                            help="First mark lost the chunks of a run that did not move for "
                                 "that long, and those whose worker gave no sign of life.")
        resend.add_argument("--queue", help="Send them to this queue instead.")

        sweep = sub.add_parser("sweep", help="Heal the distributed runs that stopped moving "
                               "(what the periodic task datapipe.sweep does).")
        sweep.add_argument("--stale-after", type=seconds, metavar="SECONDS",
                           help='Instead of DATAPIPE["STALE_AFTER"].')

        errors = sub.add_parser("errors", help="Collected errors, one line per failure.")
        errors.add_argument("--pipeline", help="Only this pipeline's errors.")
        errors.add_argument("--all", action="store_true", help="Resolved errors too.")

        again = sub.add_parser("reprocess", help="Run the items of open error rows again.")
        which = again.add_mutually_exclusive_group(required=True)
        which.add_argument("--signature", help="A failure's signature (or its first characters).")
        which.add_argument("--pipeline", help="Every open row of this pipeline.")
        which.add_argument("--id", type=int, help="One error row.")
        again.add_argument("--celery", action="store_true", help="Reprocess on Celery workers.")
        again.add_argument("--queue", help="The Celery queue (with --celery).")

        lineage = sub.add_parser("lineage", help="What an object was made of, by which "
                                 "pipelines, and what pipelines made of it.")
        lineage.add_argument("model", help="The object's model, as app_label.Model.")
        lineage.add_argument("pk", help="The object's primary key.")
        lineage.add_argument("--depth", type=int, default=DEPTH,
                             help=f"Levels of what was made of it ({DEPTH}).")
        lineage.add_argument("--json", action="store_true", dest="as_json",
                             help="Print one JSON document.")

    def handle(self, *args, subcommand, **options):
        try:
            getattr(self, "handle_" + subcommand)(**options)
        except DatapipeError as exc:  # unknown pipeline, Celery not available, ...
            raise CommandError(printable(str(exc))) from exc
        except CommandError as exc:
            raise CommandError(printable(str(exc))) from exc

    def say(self, text: str = "") -> None:
        self.stdout.write(printable(text))

    # Pipelines -----------------------------------------------------------------------------

    def handle_list(self, **options):
        rows = [
            [name, ", ".join(registry.depends_of(name)) or "-",
             ", ".join(registry.triggers_of(name)) or "-",
             ", ".join(registry.triggered_by(name)) or "-"]
            for name in registry.names()
        ]
        self.say(table(["pipeline", "depends on", "triggers", "triggered by"], rows))

    def handle_run(self, name, model, filter, chunksize, celery, queue, wait, **options):
        registry.get(name)  # PipelineNotFound -> CommandError
        items = self.items(model, filter)
        if chunksize is not None and chunksize < 1:
            raise CommandError("--chunksize must be a positive integer.")
        if not celery:
            if queue or wait:
                raise CommandError("--queue and --wait go with --celery.")
            report = get_session(chunksize=chunksize).run(items, name)
            self.print_report(report)
            return
        handle = get_session().run_in_celery(
            items, name, celery_chunksize=chunksize or 10, queue=queue
        )
        self.say(f"Run {handle.id} of {name!r} sent to Celery; follow it with "
                 f"`manage.py datapipe status {handle.id}`.")
        if wait:
            self.follow(handle)

    def items(self, label: str, filters: list[str]):
        """The QuerySet of ``label``'s rows kept by the ``field=value`` filters."""
        try:
            model = apps.get_model(label)
        except (LookupError, ValueError) as exc:
            raise CommandError(f"Unknown model {label!r}: give it as app_label.Model.") from exc
        lookups = {}
        for text in filters:
            field, sep, value = text.partition("=")
            if not sep or not field:
                raise CommandError(f"Bad filter {text!r}: write it as field=value.")
            if field.endswith("__in"):
                value = value.split(",") if value else []
            elif field.endswith("__isnull"):
                if value.lower() not in ("true", "false"):
                    raise CommandError(f"Bad filter {text!r}: __isnull takes true or false.")
                value = value.lower() == "true"
            lookups[field] = value
        try:
            items = model._default_manager.filter(**lookups)
            with transaction.atomic(using=items.db):  # a value the database refuses (a bad
                items.exists()                        # regex): said now, not mid-run
        except (FieldError, ValidationError, ValueError, TypeError, DatabaseError) as exc:
            raise CommandError(f"Bad filter on {label}: {exc}") from exc
        return items

    def print_report(self, report, indent: str = "") -> None:
        for dependency in report.dependencies:
            self.print_report(dependency, indent + "(depends) ")
        self.say(f"{indent}{report} (run {report.run_id})")
        for triggered in report.triggered:
            self.print_report(triggered, indent + "(triggered) ")
        if report.errored and not indent:
            self.say(f"See the errors with `manage.py datapipe errors --pipeline "
                     f"{report.pipeline}`.")

    def follow(self, handle) -> None:
        """A progress bar of chunks done until the run is over, then its counts."""
        from tqdm import tqdm

        # tqdm rewrites its line with "\r": give it the raw stream, not Django's wrapper.
        with tqdm(total=None, unit="chunk", file=self.stderr._out) as bar:
            while True:
                progress = handle.progress()
                bar.total = progress["chunks_total"]
                bar.n = progress["chunks_done"]
                bar.set_postfix(processed=progress["processed"], errored=progress["errored"])
                if progress["status"] != PipelineRun.Status.RUNNING:
                    break
                time.sleep(POLL_SECONDS)
        counts = ", ".join(f"{progress[name]} {name}" for name in COUNTS)
        self.say(f"Run {handle.id} {progress['status']}: {counts}")

    # Runs ------------------------------------------------------------------------------------

    def run_record(self, run_id: int) -> PipelineRun:
        try:
            return PipelineRun.objects.get(pk=run_id)
        except PipelineRun.DoesNotExist:
            raise CommandError(f"No run {run_id}.") from None

    def handle_status(self, run_id, **options):
        run = self.run_record(run_id)
        progress = run.progress()
        elapsed = f"{progress['elapsed']:.1f}s" + ("" if progress["finished"] else " (running)")
        fields = [
            ("run", run.pk), ("pipeline", progress["pipeline"]),
            ("status", progress["status"] + (
                f" (stale: no chunk moved for {conf.get('STALE_AFTER')} s; the sweep sends "
                f"them again, or `datapipe resend {run.pk} --stale-after 0`)"
                if progress["stale"] else "")),
            ("distributed", "yes" if progress["distributed"] else "no"),
        ]
        if run.parent_id is not None:
            fields.append(("parent run", run.parent_id))
        if run.triggered_by_id is not None:
            fields.append(("triggered by", run.triggered_by_id))
        if progress["distributed"]:
            fields.append(("chunks", f"{progress['chunks_done']}/{progress['chunks_total']} "
                                     f"done ({progress['fraction']:.0%})"))
        fields += [
            *((name, progress[name]) for name in COUNTS),
            ("broke", "yes" if progress["broke"] else "no"),
            ("started", f"{run.started_at:%Y-%m-%d %H:%M:%S}"),
            ("finished", f"{run.finished_at:%Y-%m-%d %H:%M:%S}" if run.finished_at else "-"),
            ("elapsed", elapsed),
            ("error rows", PipelineError.objects.filter(run=run).count()),
            ("child runs", by_status(progress["children"]) or "none"),
        ]
        if progress["message"]:
            fields.append(("message", progress["message"]))
        width = max(len(name) for name, _ in fields)
        for name, value in fields:
            self.say(f"{name.ljust(width)}  {value}")
        if progress["chunks"]:
            self.print_chunks(run, progress["chunks"])
        if progress["children"]:
            self.say("\nchild runs:")
            self.print_children(run)

    def print_chunks(self, run, chunks: dict) -> None:
        self.say(f"\nchunks: {by_status(chunks)}")
        unfinished = run.chunks.exclude(status="done").order_by("index")[:50]
        rows = [[c.index, c.status, c.processed, c.succeeded, c.errored] for c in unfinished]
        if rows:
            self.say(table(["chunk", "status", "processed", "succeeded", "errored"], rows))

    def print_children(self, run) -> None:
        """The runs ``run`` started as an indented tree."""
        for level, child, more in run.tree(TREE_DEPTH, CHILDREN_PER_RUN, TREE_LINES):
            indent = "  " * (level + 1)
            if child is None:
                self.say(f"{indent}... and {more} more")
                continue
            how = f", triggered by run {child.triggered_by_id}" if child.triggered_by_id else ""
            self.say(f"{indent}{child.pipeline_name} (run {child.pk}): {child.status}, "
                     f"{child.processed} processed, {child.errored} errored{how}")

    def handle_resend(self, run_id, stale_after, queue, **options):
        from datapipe.distributed.dispatch import resend

        run = self.run_record(run_id)
        sent = resend(run_id, stale_after=stale_after, queue=queue)
        if not sent:
            hint = ("" if stale_after is not None or run.status != run.Status.RUNNING else
                    "; if its chunks stopped moving, add --stale-after SECONDS")
            raise CommandError(f"Run {run_id} of {run.pipeline_name!r} ({run.status}) has no "
                               f"lost or failed chunk to send{hint}.")
        self.say(f"{sent} chunks of run {run_id} sent again.")

    def handle_sweep(self, stale_after, **options):
        from datapipe.distributed.sweep import sweep

        self.say(f"Sweep: {sweep(stale_after)}.")

    # Errors ----------------------------------------------------------------------------------

    def handle_errors(self, pipeline, all, **options):
        rows = PipelineError.objects.all() if all else PipelineError.objects.filter(resolved=False)
        if pipeline:
            rows = rows.filter(pipeline_name=pipeline)
        groups = list(group_rows(rows))
        if not groups:
            self.say("No open errors." if not all else "No errors.")
            return
        lines = [
            [g.signature[:12], g.pipeline_name, g.open_rows, g.items,
             f"{g.group_first_seen:%Y-%m-%d %H:%M}", f"{g.group_last_seen:%Y-%m-%d %H:%M}",
             f"{g.error_type}: {g.error_message}"[:80]]
            for g in groups
        ]
        self.say(table(["signature", "pipeline", "open", "items", "first seen", "last seen",
                        "error"], lines))
        self.say("\nReprocess a failure with `manage.py datapipe reprocess --signature SIG`.")

    def handle_reprocess(self, signature, pipeline, id, celery, queue, **options):
        if queue and not celery:
            raise CommandError("--queue goes with --celery.")
        rows = PipelineError.objects.filter(resolved=False)
        if signature is not None:
            rows = rows.filter(signature__startswith=signature)
            if len({row[0] for row in rows.values_list("signature").distinct()[:2]}) > 1:
                raise CommandError(f"Signature {signature!r} matches several failures: "
                                   "give more characters.")
        elif pipeline is not None:
            rows = rows.filter(pipeline_name=pipeline)
        else:
            rows = rows.filter(pk=id)
        if not rows.exists():
            raise CommandError("No open error rows match.")
        result = reprocess(rows, in_celery=celery, queue=queue)
        self.say(str(result))
        for handle in result.handles:
            self.say(f"Follow run {handle.id} with `manage.py datapipe status {handle.id}`.")

    # Lineage ---------------------------------------------------------------------------------

    def handle_lineage(self, model, pk, depth, as_json, **options):
        try:
            obj = apps.get_model(model)._base_manager.get(pk=pk)
        except (LookupError, ValueError, ValidationError, ObjectDoesNotExist) as exc:
            raise CommandError(f"No {model} with primary key {pk!r} (give the model as "
                               "app_label.Model).") from exc
        if depth < 0:
            raise CommandError("--depth must be 0 or more.")
        tree, steps = downstream(obj, depth), upstream(obj)
        if as_json:  # ASCII: no character of the data reaches the terminal unescaped
            document = {"upstream": [step.as_dict() for step in steps],
                        "downstream": tree.as_dict()}
            self.stdout.write(json.dumps(document, indent=2))
            return
        name = lineage_text(tree, obj)
        if not steps and not tree.children:
            self.say(f"{name}: no lineage. No pipeline made it, and no pipeline processed it "
                     "into outputs.")
        if steps:
            self.say(f"{name} was made of (nearest first):")
        for step in steps:
            self.say(f"  {step.pipeline} <- {lineage_text(step, step.item)}")
        if tree.children:
            self.say(f"Made from it (at most {depth} levels):")
            self.print_made_from(tree, 1)

    def print_made_from(self, node, level: int) -> None:
        """A downstream tree, one indented line per object."""
        made_by = f"{node.pipeline} -> " if node.pipeline else ""
        more = " ... and more (depth or size limit)" if node.truncated else ""
        self.say("  " * level + made_by + lineage_text(node, node.object) + more)
        for child in node.children:
            self.print_made_from(child, level + 1)


def lineage_text(node, obj) -> str:
    """An object of a lineage: label, pk, text (or "deleted"), its error rows."""
    text = f"{node.label} {node.pk} " + (f"({describe(obj)})" if obj is not None else "(deleted)")
    if node.errors:
        still_open = sum(not row.resolved for row in node.errors)
        text += f" [{len(node.errors)} error rows, {still_open} open]"
    return text
