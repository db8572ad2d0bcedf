"""The chunk ledger without a broker: chunks delivered in this process, as a worker would.

Inside the test's transaction the tasks are never sent (they would be on commit), so
these run on SQLite too.
"""

from django.test import override_settings

import tests.distributed_pipes  # noqa: F401  (registers the dist.* pipelines)
from datapipe import get_session
from datapipe.distributed.worker import run_chunk
from datapipe.models import PipelineChunk, PipelineError
from tests.testapp.models import ResultItem, SourceItem


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
