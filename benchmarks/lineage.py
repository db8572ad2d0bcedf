"""``python -m benchmarks.lineage [--trackers N] [--items N] [--repeat N] [--output FILE]``.

Lineage at scale: imports a few news items through ``news.import`` (which triggers
``news.link.tags``), fills the tracker table up to ``--trackers`` rows (1,000,000) of the
same pipelines and models in one INSERT ... SELECT, then measures ``upstream()`` of a tag
and ``downstream()`` of a raw item (queries and milliseconds), with and without the
indexes of migration 0005 on PostgreSQL. Then what they cost writers: inserting
``--items`` trackers (COPY in batches of 2,000, as a run's flushes do) and a local run
of ``--items`` items with one output each (benchmark scenario 1), with and without them.
On SQLite (no index) the reads alone. Prints the markdown report and writes it to
``--output`` (``benchmarks/LINEAGE.md``).
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# "Which tracker lists this output" (GIN, datapipe/migrations/0005_lineage.py) and "which
# trackers did this run write" ((pipeline_name, updated_at), the model's index).
INDEXES = ("datapipe_track_outputs_gin", "datapipe_track_pipeline_time")
# Primary keys of the filling trackers' items and outputs start here: no real row has them.
OFFSET = 1_000_000_000
BATCH = 2000


def parse(argv):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.lineage",
                                     description=__doc__.split("\n\n")[1])
    parser.add_argument("--trackers", type=int, default=1_000_000, help="trackers (1000000)")
    parser.add_argument("--items", type=int, default=100_000,
                        help="trackers inserted and items of the local run (100000)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs of each write measure, interleaved; medians (3)")
    parser.add_argument("--reads", type=int, default=20, help="calls per read measure (20)")
    parser.add_argument("--output", type=Path, default=HERE / "LINEAGE.md", help="file written")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from .data import seed
    from .machine import describe

    call_command("migrate", verbosity=0)
    postgresql = connection.vendor == "postgresql"
    say(f"seeding {args.items:,} source items")
    seed(args.items)
    probes = prepare(args.trackers)
    reads = {"with": measure_reads(probes, args.reads)}
    writes: dict[str, list] = {}
    index = {}
    if postgresql:
        index = index_figures()
        definitions = drop_indexes()
        reads["without"] = measure_reads(probes, max(3, args.reads // 5))
        index["build_seconds"] = create_indexes(definitions)
        writes = measure_writes(args, definitions)
    text = markdown(args, describe(), probes, reads, writes, index, postgresql)
    print(text)
    args.output.write_text(text)
    return 0


def say(text: str) -> None:
    print(f"benchmarks.lineage: {text}", file=sys.stderr, flush=True)


# The data -------------------------------------------------------------------------------------


def prepare(trackers: int) -> dict:
    """News imported for real, then filling trackers up to ``trackers`` rows; the probes."""
    from datapipe import get_session
    from datapipe.models import PipelineError, PipelineRun, PipelineTrack
    from tests.testapp.models import News, RawNews, Tag

    from .data import _flush, _vacuum

    _flush([Tag, News, RawNews, PipelineTrack, PipelineError, PipelineRun])
    RawNews.objects.bulk_create(RawNews(title=f"news {n}", tags="weather,spain,europe")
                                for n in range(100))
    get_session(progress=False).run(RawNews.objects.all(), "news.import")
    say(f"filling the tracker table up to {trackers:,} rows")
    started = time.perf_counter()
    fill(trackers - PipelineTrack.objects.count())
    say(f"filled in {time.perf_counter() - started:.1f} s")
    _vacuum([PipelineTrack])
    raw = RawNews.objects.order_by("pk")[50]
    tag = Tag.objects.filter(news__title=raw.title).order_by("pk").first()
    return {"raw": raw, "tag": tag, "trackers": PipelineTrack.objects.count()}


def fill(count: int) -> None:
    """``count`` trackers of ``news.import`` and ``news.link.tags`` (half each), in one
    statement: items and outputs of the same models as the real ones, other pks."""
    from django.db import connection
    from django.utils import timezone

    from datapipe.identity import content_type_id
    from datapipe.models import PipelineTrack
    from tests.testapp.models import News, RawNews

    if count <= 0:
        return
    postgresql = connection.vendor == "postgresql"
    obj, array = ("jsonb_build_object", "jsonb_build_array") if postgresql else (
        "json_object", "json_array")
    # SQLite: a recursive common table expression stands in for generate_series.
    series = "generate_series(1::bigint, %(count)s::bigint) AS s(g)" if postgresql else "s"
    prefix = "" if postgresql else (
        "WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < %(count)s) ")
    even, item = "g %% 2 = 0", "(g + %(offset)s)"
    sql = (
        f"{prefix}INSERT INTO {connection.ops.quote_name(PipelineTrack._meta.db_table)} "
        "(pipeline_name, item_content_type_id, item_id, outputs, triggered_by, updated_at) "
        f"SELECT CASE WHEN {even} THEN 'news.import' ELSE 'news.link.tags' END, "
        f"CASE WHEN {even} THEN %(raw)s ELSE %(news)s END, CAST({item} AS TEXT), "
        f"CASE WHEN {even} THEN {obj}('testapp.news', {array}({item})) "
        f"ELSE {obj}('testapp.tag', {array}(3 * {item}, 3 * {item} + 1, 3 * {item} + 2)) END, "
        f"CASE WHEN {even} THEN '' ELSE 'news.import' END, %(now)s FROM {series}"
    )
    params = {"count": count, "offset": OFFSET, "raw": content_type_id(RawNews),
              "news": content_type_id(News),
              "now": connection.ops.adapt_datetimefield_value(timezone.now())}
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


# Reads ----------------------------------------------------------------------------------------


def measure_reads(probes: dict, calls: int) -> dict:
    """Queries and median milliseconds of each lineage read on the probes."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from datapipe.admin.lineage import items_of_run
    from datapipe.lineage import downstream, upstream
    from datapipe.models import PipelineRun

    run = PipelineRun.objects.get(pipeline_name="news.import")
    reads = {
        "upstream": lambda: upstream(probes["tag"]),
        "downstream": lambda: downstream(probes["raw"]),
        "items_of_run": lambda: items_of_run(run),
    }
    figures = {}
    for name, read in reads.items():
        read()  # content types cached, pages in memory: the steady state
        with CaptureQueriesContext(connection) as captured:
            answer = read()
        times = []
        for _ in range(calls):
            started = time.perf_counter()
            read()
            times.append((time.perf_counter() - started) * 1000)
        figures[name] = {"queries": len(captured), "ms": statistics.median(times),
                         "answer": answer}
        say(f"{name}: {len(captured)} queries, {figures[name]['ms']:.2f} ms")
    figures["plan"] = step_plan(probes["tag"])
    return figures


def step_plan(tag) -> str:
    """The access path of one upstream step ("which tracker lists this output")."""
    from django.db import connection

    from datapipe.models import PipelineTrack

    tracks = PipelineTrack.objects.filter(outputs__contains={"testapp.tag": [tag.pk]})
    if connection.vendor != "postgresql":
        return "json_each over every row (no index)"
    plan = [line.strip().lstrip("-> ").split("  (")[0] for line in tracks.explain().splitlines()]
    scans = [line for line in plan if "Index Scan" in line] or [
        line for line in plan if "Scan" in line]
    return (scans or plan)[0]


# The indexes and writes -----------------------------------------------------------------------


def index_figures() -> dict:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_relation_size(%s), pg_relation_size(%s), "
                       "pg_relation_size('datapipe_pipelinetrack')", list(INDEXES))
        gin, by_time, table = cursor.fetchone()
    return {"gin_mib": gin / 2**20, "time_mib": by_time / 2**20, "table_mib": table / 2**20}


def drop_indexes() -> list[str]:
    """Drop the lineage indexes; their definitions, to build them again."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = ANY(%s)",
                       [list(INDEXES)])
        definitions = [row[0] for row in cursor.fetchall()]
        if len(definitions) != len(INDEXES):
            raise SystemExit(f"missing {INDEXES}: migrate datapipe")
        for name in INDEXES:
            cursor.execute(f"DROP INDEX {name}")
        cursor.execute("ANALYZE datapipe_pipelinetrack")
    return definitions


def create_indexes(definitions: list[str]) -> float:
    """Build the indexes again; seconds it took."""
    from django.db import connection

    started = time.perf_counter()
    with connection.cursor() as cursor:
        for definition in definitions:
            cursor.execute(definition)
        cursor.execute("ANALYZE datapipe_pipelinetrack")
    return time.perf_counter() - started


def measure_writes(args, definitions: list[str]) -> dict[str, list]:
    """Wall and CPU items/s of inserting trackers and of a local run, with and without the
    indexes, interleaved, on the full tracker table."""
    from .scenarios import datapipe_local

    writes: dict[str, list] = {}
    for repetition in range(1, args.repeat + 1):
        for indexed in (True, False) if repetition % 2 else (False, True):  # no drift favoured
            if not indexed:
                drop_indexes()
            # "run": benchmark scenario 1 over the seeded items, one output each, tracked.
            for name, write in (("trackers", insert_trackers), ("run", lambda _: datapipe_local())):
                clock, merge = Clock(), Clock()
                with clock:
                    count = write(args.items)
                    if indexed:  # GIN defers entries to a pending list: count merging them
                        with merge:
                            clean_pending_list()
                        writes.setdefault(f"merge, {name}", []).append(merge.cpu)
                wall, cpu = count / clock.wall, count / clock.cpu
                key = f"{name}, {'with' if indexed else 'without'}"
                writes.setdefault(key, []).append(wall)
                writes.setdefault(f"{key}, cpu", []).append(cpu)
                say(f"run {repetition}/{args.repeat}, {key} the indexes: {wall:,.0f} items/s, "
                    f"{cpu:,.0f} items per CPU second")
                tidy()
            if not indexed:
                create_indexes(definitions)
    return writes


def clean_pending_list() -> None:
    """Merge the GIN index's pending entries into it, as a later insert or VACUUM would."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT gin_clean_pending_list(%s::regclass)", [INDEXES[0]])


class Clock:
    """Wall seconds, and CPU seconds of this process and of its database backend: on a
    shared machine the CPU time of the work is steadier than the wall time."""

    def __enter__(self):
        self._wall, self._cpu = time.perf_counter(), self._cpu_now()

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self._wall
        self.cpu = self._cpu_now() - self._cpu

    @staticmethod
    def _cpu_now() -> float:
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            pid = cursor.fetchone()[0]
        # /proc/PID/stat: utime and stime are fields 14 and 15, after "(comm)".
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        backend = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return time.process_time() + backend


def insert_trackers(count: int) -> int:
    """Write ``count`` trackers as a run's flushes do (one transaction)."""
    from django.db import connection, transaction
    from django.utils import timezone

    from datapipe.bulk import insert_rows
    from datapipe.identity import content_type_id
    from datapipe.models import PipelineTrack
    from datapipe.tracking import _TRACK_FIELDS
    from tests.testapp.models import SourceItem

    type_id, now = content_type_id(SourceItem), timezone.now()
    with transaction.atomic():
        for start in range(0, count, BATCH):
            rows = [("benchmarks.trackers", type_id, str(n), {"testapp.resultitem": [n]}, "", now)
                    for n in range(start, min(start + BATCH, count))]
            insert_rows(PipelineTrack, _TRACK_FIELDS, rows, connection.alias)
    return count


def tidy() -> None:
    """Remove what a write measure wrote: the tracker table is back to its filled size."""
    from datapipe.models import PipelineTrack
    from tests.testapp.models import Derived, Note, ResultItem

    from .data import _flush, _vacuum

    PipelineTrack.objects.filter(
        pipeline_name__in=["benchmarks.trackers", "benchmarks.outputs"]).delete()
    _flush([Note, Derived, ResultItem])
    _vacuum([PipelineTrack, ResultItem])


# The report -----------------------------------------------------------------------------------


def markdown(args, machine, probes, reads, writes, index, postgresql) -> str:
    command = os.environ.get("BENCHMARKS_COMMAND") or "python -m benchmarks.lineage"
    command = " ".join([command, *map(shlex.quote, sys.argv[1:])])
    with_ = reads["with"]
    up, down = with_["upstream"]["answer"], with_["downstream"]["answer"]
    nodes = len(list(down.walk()))
    lines = [
        "# Lineage at scale",
        "",
        f"`{command}`: {probes['trackers']:,} trackers; reads are medians of "
        f"{args.reads} calls (of {max(3, args.reads // 5)} without the indexes), writes medians "
        f"of {args.repeat} interleaved runs.",
        "",
        *(f"- **{key}**: {value}" for key, value in machine.items()),
        "",
        "## Reads",
        "",
        "| read | answer | queries | ms" + (", with the indexes | ms, without |" if postgresql
                                           else " (no index) | |"),
        "|---|---|---|---|---|",
    ]
    rows = [
        ("upstream(tag)", f"{len(up)} steps back: "
         + ", ".join(f"`{step.pipeline}`" for step in up), "upstream"),
        ("downstream(raw item)", f"{nodes} objects, 2 levels", "downstream"),
        ("items of a run (run page)", "20 items", "items_of_run"),
    ]
    for title, answer, key in rows:
        without = reads.get("without", {}).get(key)
        plain = f"{without['ms']:.2f}" if without else "-"
        lines.append(f"| {title} | {answer} | {with_[key]['queries']} | "
                     f"{with_[key]['ms']:.2f} | {plain} |")
    lines += ["", "One upstream step, \"which tracker lists this output\": "
              f"{with_['plan']}" + (f" with the index, {reads['without']['plan']} without."
                                    if postgresql else "."), ""]
    if not postgresql:
        return "\n".join(lines)
    lines += [
        "## What the indexes cost writers",
        "",
        f"GIN on `outputs` (`jsonb_path_ops`): {index['gin_mib']:.0f} MiB; btree on "
        f"`(pipeline_name, updated_at)`: {index['time_mib']:.0f} MiB; the table: "
        f"{index['table_mib']:.0f} MiB. "
        f"Both built in {index['build_seconds']:.1f} s on {probes['trackers']:,} trackers.",
        "",
        "| write, on the full table | items/s, with the indexes | without | slower with "
        "them | items per CPU second, with | without | slower with them |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, title in (("trackers", f"inserting {args.items:,} trackers (COPY, batches of "
                                    f"{BATCH:,})"),
                       ("run", f"local run, {args.items:,} items, one output each")):
        cells = []
        for suffix in ("", ", cpu"):
            indexed = statistics.median(writes[f"{key}, with{suffix}"])
            plain = statistics.median(writes[f"{key}, without{suffix}"])
            cells.append(f"{indexed:,.0f} | {plain:,.0f} | {(plain - indexed) / plain * 100:+.1f}%")
        lines.append(f"| {title} | {' | '.join(cells)} |")
    lines += ["", "CPU seconds are this process's and its PostgreSQL backend's (from /proc), not "
              "the WAL writer's or the checkpointer's. With the indexes, the time includes "
              "merging the GIN index's pending entries (as the next VACUUM, or an insert "
              "finding the pending list full, would): "
              f"{statistics.median(writes['merge, trackers']):.2f} CPU seconds for "
              f"{args.items:,} trackers (median)."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
