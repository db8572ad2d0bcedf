"""``datapipe status RUN_ID``: a run record, its chunks and the runs it started."""

from __future__ import annotations

from .. import conf
from ..models import PipelineError, PipelineRun
from ..models.runs import by_status
from ..report import COUNTS
from .base import Subcommand, UsageError, table

__all__ = ["Status", "run_record"]

#: How many levels of child runs are shown,
TREE_DEPTH = 5
#: how many children of one run (the others are counted),
CHILDREN_PER_RUN = 50
#: how many child runs in all,
TREE_LINES = 500
#: and how many unfinished chunks.
CHUNK_LINES = 50


def run_record(run_id: int) -> PipelineRun:
    """The run ``run_id``; a usage error when there is none."""
    try:
        return PipelineRun.objects.get(pk=run_id)
    except PipelineRun.DoesNotExist:
        raise UsageError(f"No run {run_id}.") from None


def when(moment) -> str | None:
    """A timestamp as ISO 8601 text (None stays None)."""
    return moment.isoformat() if moment is not None else None


class Status(Subcommand):
    """``datapipe status RUN_ID [--json]``.

    JSON: the fields of :meth:`datapipe.models.PipelineRun.progress` (``run_id``,
    ``pipeline``, ``status``, ``distributed``, ``stale``, the counts, ``broke``,
    ``finished``, ``elapsed`` in seconds, ``fraction``, ``message``, ``chunks`` and
    ``children`` as counts by status, ``chunks_done``, ``chunks_total``) and
    ``parent``, ``triggered_by`` (run ids or null), ``started_at``, ``finished_at``
    (ISO 8601 or null), ``error_rows``, ``unfinished_chunks`` (at most 50: ``index``,
    ``status``, ``processed``, ``succeeded``, ``errored``) and ``child_runs``: a tree of
    ``{"run_id", "pipeline", "status", "processed", "errored", "triggered_by",
    "child_runs": [...], "more": n}`` where ``more`` counts the runs left out below
    that run (deeper than 5 levels, past 50 children of a run or 500 in all); the
    top level's own ``more`` is ``child_runs_more``.
    """

    name = "status"
    help = "A run record, its chunks and its child runs."
    description = ("A run record: status (and whether it is stale), counts, chunks, timings, "
                   "error rows, and the runs it started (depends, triggers) as a tree.")
    json = True

    @classmethod
    def add_arguments(cls, parser) -> None:
        parser.add_argument("run_id", type=int, help="The run's id (PipelineRun).")

    def document(self, run_id, **options) -> dict:
        run = run_record(run_id)
        document = run.progress()
        chunks = run.chunks.exclude(status="done").order_by("index")[:CHUNK_LINES]
        top = {"child_runs": [], "more": 0}
        parents = [top]  # parents[level] holds the runs of that level
        for level, child, more in run.tree(TREE_DEPTH, CHILDREN_PER_RUN, TREE_LINES):
            del parents[level + 1:]
            if child is None:
                parents[level]["more"] = more
                continue
            node = {"run_id": child.pk, "pipeline": child.pipeline_name,
                    "status": child.status, "processed": child.processed,
                    "errored": child.errored, "triggered_by": child.triggered_by_id,
                    "child_runs": [], "more": 0}
            parents[level]["child_runs"].append(node)
            parents.append(node)
        document.update(
            parent=run.parent_id, triggered_by=run.triggered_by_id,
            started_at=when(run.started_at), finished_at=when(run.finished_at),
            error_rows=PipelineError.objects.filter(run=run).count(),
            unfinished_chunks=[{"index": c.index, "status": c.status, "processed": c.processed,
                                "succeeded": c.succeeded, "errored": c.errored}
                               for c in chunks],
            child_runs=top["child_runs"], child_runs_more=top["more"],
        )
        return document

    def render(self, document, **options) -> None:
        d = document
        elapsed = f"{d['elapsed']:.1f}s" + ("" if d["finished"] else " (running)")
        stale = (f" (stale: no chunk moved for {conf.get('STALE_AFTER')} s; the sweep sends "
                 f"them again, or `datapipe resend {d['run_id']} --stale-after 0`)"
                 if d["stale"] else "")
        fields = [("run", d["run_id"]), ("pipeline", d["pipeline"]),
                  ("status", d["status"] + stale),
                  ("distributed", "yes" if d["distributed"] else "no")]
        if d["parent"] is not None:
            fields.append(("parent run", d["parent"]))
        if d["triggered_by"] is not None:
            fields.append(("triggered by", d["triggered_by"]))
        if d["distributed"]:
            fields.append(("chunks", f"{d['chunks_done']}/{d['chunks_total']} "
                                     f"done ({d['fraction']:.0%})"))
        fields += [
            *((name, d[name]) for name in COUNTS),
            ("broke", "yes" if d["broke"] else "no"),
            ("started", d["started_at"][:19].replace("T", " ")),
            ("finished", d["finished_at"][:19].replace("T", " ") if d["finished_at"] else "-"),
            ("elapsed", elapsed),
            ("error rows", d["error_rows"]),
            ("child runs", by_status(d["children"]) or "none"),
        ]
        if d["message"]:
            fields.append(("message", d["message"]))
        width = max(len(name) for name, _ in fields)
        for name, value in fields:
            self.say(f"{name.ljust(width)}  {value}")
        if d["chunks"]:
            self.say(f"\nchunks: {by_status(d['chunks'])}")
            rows = [[c["index"], c["status"], c["processed"], c["succeeded"], c["errored"]]
                    for c in d["unfinished_chunks"]]
            if rows:
                self.say(table(["chunk", "status", "processed", "succeeded", "errored"], rows))
        if d["child_runs"]:
            self.say("\nchild runs:")
            self._tree(d["child_runs"], d["child_runs_more"], 1)

    def _tree(self, nodes: list, more: int, level: int) -> None:
        indent = "  " * level
        for node in nodes:
            how = f", triggered by run {node['triggered_by']}" if node["triggered_by"] else ""
            self.say(f"{indent}{node['pipeline']} (run {node['run_id']}): {node['status']}, "
                     f"{node['processed']} processed, {node['errored']} errored{how}")
            self._tree(node["child_runs"], node["more"], level + 1)
        if more:
            self.say(f"{indent}... and {more} more")
