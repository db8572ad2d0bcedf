"""The chunk ledger without a broker: chunks delivered in this process, as a worker would.

Inside the test's transaction the tasks are never sent (they would be on commit), so
these run on SQLite too.
"""

from datetime import timedelta

from django.test import override_settings
from django.utils import timezone

import tests.distributed_pipes  # noqa: F401  (registers the dist.* pipelines)
from datapipe import get_session
from datapipe.distributed.sweep import sweep
from datapipe.distributed.worker import run_chunk
from datapipe.models import PipelineChunk, PipelineError, PipelineRun
from tests.testapp.models import Derived, ResultItem, SourceItem


def dispatched(pipeline, count, chunksize):
    for number in range(1, count + 1):
        SourceItem.objects.create(number=number)
    handle = get_session().run_in_celery(SourceItem.objects.all(), pipeline,
                                         celery_chunksize=chunksize, queue="never-sent")
    return handle, list(PipelineChunk.objects.filter(run_id=handle.id).order_by("index"))


def deliver(handle, chunk, retries=0):
    """Deliver ``chunk`` here, as the ``retries``-th retry of its message."""
    return run_chunk(handle.id, chunk.pk, retries=retries)


def test_a_chunk_delivered_again_after_it_committed_is_skipped_and_counted_once(db):
    handle, chunks = dispatched("dist.sum", 4, 2)

    assert [deliver(handle, chunk) for chunk in chunks] == ["done", "done"]
    assert deliver(handle, chunks[1]) == "skipped"

    run = handle.run
    assert (run.status, run.processed, run.chunks_done) == ("done", 4, 2)
    assert list(ResultItem.objects.values_list("number", flat=True)) == [10.0]  # finish_run once


def test_the_run_stays_open_until_its_last_chunk_is_done(db):
    handle, chunks = dispatched("flow", 3, 2)

    deliver(handle, chunks[0])

    assert handle.progress()["status"] == "running"
    assert handle.progress()["chunks"] == {"done": 1, "dispatched": 1}


@override_settings(DATAPIPE={"CELERY_MAX_REDELIVERIES": 1})
def test_a_chunk_redelivered_past_the_cap_records_its_items_as_errors(db):
    handle, chunks = dispatched("flow", 3, 3)
    # two deliveries whose worker died, and a retry that went well
    PipelineChunk.objects.filter(pk=chunks[0].pk).update(status="running", deliveries=3)

    assert deliver(handle, chunks[0], retries=1) == "failed"

    chunk = PipelineChunk.objects.get(pk=chunks[0].pk)
    assert (chunk.status, chunk.deliveries, chunk.errored) == ("failed", 4, 3)
    given_up = PipelineError.objects.filter(error_type="datapipe.distributed.ledger.ChunkGivenUp")
    assert given_up.count() == 3
    assert not ResultItem.objects.exists()
    assert handle.run.status == "failed"


@override_settings(DATAPIPE={"CELERY_MAX_REDELIVERIES": 1})
def test_retries_do_not_count_as_redeliveries(db):
    handle, chunks = dispatched("flow", 3, 3)
    PipelineChunk.objects.filter(pk=chunks[0].pk).update(status="running", deliveries=3)

    assert deliver(handle, chunks[0], retries=3) == "done"
    assert ResultItem.objects.count() == 3


# Triggers in the ledger, the sweep (in this process: nothing is sent) -------------------

def test_a_chunk_committed_before_its_triggers_ran_runs_them_on_its_next_delivery(db):
    handle, chunks = dispatched("flow", 4, 2)
    chunk = chunks[0]
    assert deliver(handle, chunk) == "done"
    derived_before = Derived.objects.count()
    # as if the worker had died in the trigger run: the chunk is committed, results stored
    Derived.objects.all().delete()
    PipelineChunk.objects.filter(pk=chunk.pk).update(
        status="committed", results={"model": "testapp.ResultItem", "queryset": False,
                                     "pks": list(ResultItem.objects.values_list("pk", flat=True))})
    PipelineRun.objects.filter(pk=handle.id).update(chunks_done=0)

    assert deliver(handle, chunk) == "done"

    chunk.refresh_from_db()
    assert (chunk.status, chunk.results, chunk.deliveries) == ("done", None, 2)
    assert Derived.objects.count() == derived_before == 2
    assert handle.run.chunks_done == 1


def test_a_chunk_counts_as_done_only_after_its_triggers(db):
    handle, chunks = dispatched("flow", 2, 2)

    deliver(handle, chunks[0])

    triggered = PipelineRun.objects.get(pipeline_name="flow.derived")
    assert triggered.parent_id == handle.id and triggered.triggered_by_id == handle.id
    assert handle.run.status == "done"


@override_settings(DATAPIPE={"STALE_AFTER": 60})
def test_the_sweep_sends_again_the_chunks_of_a_run_that_stopped_moving(db):
    handle, chunks = dispatched("flow", 6, 2)
    deliver(handle, chunks[0])
    assert sweep().resent == {}  # it moved a moment ago
    an_hour_ago = timezone.now() - timedelta(hours=1)
    PipelineChunk.objects.filter(run_id=handle.id).update(
        dispatched_at=an_hour_ago, started_at=an_hour_ago, finished_at=an_hour_ago,
        heartbeat_at=an_hour_ago)

    report = sweep()

    assert report.resent == {handle.id: 2}
    assert set(PipelineChunk.objects.filter(run_id=handle.id).values_list(
        "status", "resends")) == {("done", 0), ("dispatched", 1)}
    assert handle.progress()["stale"] is False  # sent again just now


@override_settings(DATAPIPE={"STALE_AFTER": 60, "CELERY_MAX_REDELIVERIES": 2})
def test_the_sweep_gives_up_a_chunk_sent_too_often_and_finishes_the_run(db):
    handle, chunks = dispatched("flow", 2, 2)
    an_hour_ago = timezone.now() - timedelta(hours=1)
    PipelineChunk.objects.filter(pk=chunks[0].pk).update(
        status="running", dispatched_at=an_hour_ago, started_at=an_hour_ago,
        heartbeat_at=an_hour_ago, resends=2)

    report = sweep()

    assert (report.given_up, report.resent, report.finished) == (1, {}, [handle.id])
    run = handle.run
    assert (run.status, run.errored) == ("failed", 2)
    assert run.message.startswith("1 of 1 chunks failed (the first: ChunkGivenUp: The chunk was")
    given_up = PipelineError.objects.filter(error_type="datapipe.distributed.ledger.ChunkGivenUp")
    assert given_up.count() == 2


@override_settings(DATAPIPE={"STALE_AFTER": 60})
def test_the_sweep_claims_again_a_finish_run_whose_worker_died(db):
    handle, chunks = dispatched("dist.sum", 4, 2)
    for chunk in chunks:
        deliver(handle, chunk)
    ResultItem.objects.all().delete()  # finish_run's output, as if it never ran
    PipelineRun.objects.filter(pk=handle.id).update(
        status="running", finished_at=timezone.now() - timedelta(hours=1))

    assert sweep().finished == [handle.id]
    assert handle.run.status == "done"
    assert list(ResultItem.objects.values_list("number", flat=True)) == [10.0]


@override_settings(DATAPIPE={"TRACEBACK_PAGES_PER_SIGNATURE": 1})
def test_chunks_of_a_run_share_its_cap_of_stored_pages_per_failure(db):
    for number in range(6):
        SourceItem.objects.create(number=number, behaviour="error")
    handle = get_session().run_in_celery(SourceItem.objects.all(), "flow",
                                         celery_chunksize=2, queue="never-sent")

    for chunk in PipelineChunk.objects.filter(run_id=handle.id):
        deliver(handle, chunk)

    rows = PipelineError.objects.filter(pipeline_name="flow")
    assert rows.count() == 6
    assert rows.exclude(traceback_html="").count() == 1
