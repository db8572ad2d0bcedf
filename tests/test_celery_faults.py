"""Workers killed, database backends terminated: nothing lost, nothing duplicated.

Each test records its figures (items sent, outputs, duplicates, lost) in
``$DATAPIPE_TEST_OUTPUT/celery-faults.json``.
"""

import json
import os
import signal
import tempfile
import time
from collections import Counter
from pathlib import Path

from django.db import connection

import tests.distributed_pipes  # noqa: F401  (registers the dist.* pipelines here too)
from datapipe import conf, get_session
from datapipe.models import PipelineChunk, PipelineError
from tests.testapp.models import ResultItem, SourceItem

WAIT = 120


def make_items(behaviours):
    return [SourceItem.objects.create(behaviour=b) for b in behaviours]


def send_slow(items, queue, sleep=0.2, chunksize=5):
    session = get_session(context={"sleep": sleep})
    return session.run_in_celery(SourceItem.objects.filter(pk__in=[i.pk for i in items]),
                                 "dist.slow", celery_chunksize=chunksize, queue=queue)


def running_chunk(handle, timeout=60):
    """A chunk of the run that a worker is in the middle of (after its first item)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        chunk = PipelineChunk.objects.filter(run_id=handle.id, status="running").first()
        if chunk is not None:
            time.sleep(0.15)  # into its items
            return chunk
        time.sleep(0.02)
    raise AssertionError("no chunk started")


def figures(name, items, run, **extra):
    """Items sent, outputs, duplicates and lost items of a run; recorded for the report."""
    outputs = Counter(ResultItem.objects.exclude(source=None).values_list("source_id", flat=True))
    sent = {item.pk for item in items}
    result = {
        "items_sent": len(sent),
        "outputs": sum(outputs.values()),
        "duplicates": sum(count - 1 for count in outputs.values() if count > 1),
        "lost": len(sent - set(outputs)),
        "run_processed": run.processed,
        "redelivered_chunks": run.chunks.filter(deliveries_total__gt=1).count(),
        **extra,
    }
    folder = os.environ.get("DATAPIPE_TEST_OUTPUT") or tempfile.gettempdir()
    out = Path(folder) / "celery-faults.json"
    recorded = json.loads(out.read_text()) if out.exists() else {}
    recorded[f"{name} ({connection.vendor})"] = result
    out.write_text(json.dumps(recorded, indent=2, sort_keys=True))
    return result


def test_a_pool_process_killed_mid_chunk_loses_and_duplicates_nothing(celery_worker):
    items = make_items(["ok"] * 40)
    handle = send_slow(items, celery_worker.queue)

    chunk = running_chunk(handle)
    os.kill(int(chunk.worker.rsplit(":", 1)[1]), signal.SIGKILL)
    run = handle.wait(timeout=WAIT)

    result = figures("kill -9 of a pool process", items, run)
    assert (result["lost"], result["duplicates"], result["outputs"]) == (0, 0, 40)
    assert (run.status, run.processed, run.succeeded) == ("done", 40, 40)
    assert PipelineChunk.objects.get(pk=chunk.pk).deliveries == 2


def test_a_whole_worker_killed_then_replaced_loses_and_duplicates_nothing(
    start_worker, celery_queue
):
    items = make_items(["ok"] * 40)
    first = start_worker(celery_queue)
    handle = send_slow(items, celery_queue)

    killed = running_chunk(handle)
    first.kill()
    start_worker(celery_queue)
    run = handle.wait(timeout=WAIT)

    result = figures("kill -9 of the whole worker, then a new worker", items, run)
    assert (result["lost"], result["duplicates"], result["outputs"]) == (0, 0, 40)
    assert (run.status, run.processed, run.succeeded) == ("done", 40, 40)
    assert PipelineChunk.objects.get(pk=killed.pk).deliveries == 2


def test_a_database_backend_terminated_mid_chunk_is_retried(celery_worker):
    items = make_items(["ok", "query"] * 20)
    handle = send_slow(items, celery_worker.queue, sleep=0.1)

    running_chunk(handle)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND backend_type = 'client backend'"
        )
        terminated = cursor.fetchone()[0]
    run = handle.wait(timeout=WAIT)

    result = figures("pg_terminate_backend of the workers' backends", items, run,
                     backends_terminated=terminated)
    assert terminated >= 1
    assert (result["lost"], result["duplicates"], result["outputs"]) == (0, 0, 40)
    assert (run.status, run.processed, run.succeeded, run.errored) == ("done", 40, 40, 0)
    assert result["redelivered_chunks"] >= 1
    assert set(SourceItem.objects.filter(behaviour="query").values_list("touched", flat=True)) \
        == {1}


def test_a_chunk_that_keeps_killing_its_worker_ends_as_errors(celery_worker):
    items = make_items(["ok", "ok", "ok", "ok", "crash", "ok", "ok", "ok"])

    run = get_session().run_in_celery(SourceItem.objects.all(), "dist.crash",
                                      celery_chunksize=3, queue=celery_worker.queue,
                                      ).wait(timeout=WAIT)

    crashed = run.chunks.get(index=1)
    result = figures("a chunk killing its worker every time", items, run,
                     deliveries_of_that_chunk=crashed.deliveries)
    assert crashed.status == "failed"
    assert crashed.deliveries == conf.get("CELERY_MAX_REDELIVERIES") + 2
    errors = PipelineError.objects.filter(pipeline_name="dist.crash")
    assert sorted(errors.values_list("item_id", flat=True)) == sorted(
        str(item.pk) for item in items[3:6])
    assert set(errors.values_list("error_type", flat=True)) == {
        "datapipe.distributed.ledger.ChunkGivenUp"}
    assert (result["lost"], result["duplicates"]) == (3, 0)  # the 3 recorded as errors
    assert (run.status, run.processed, run.succeeded, run.errored) == ("failed", 8, 5, 3)

