"""Distributed runs through real Celery workers: what is particular to chunks.

The contract shared with local runs (flow table, reparse, error rows, lifecycle) is
tests/test_contract.py, run both ways. Each test here gets a worker of its own
(``celery_worker``) consuming a fresh queue; see ``tests/workers.py``. They run on
PostgreSQL only.
"""

from collections import Counter

import pytest

import tests.distributed_pipes  # noqa: F401  (registers the dist.* pipelines here too)
from datapipe import get_session
from datapipe.distributed.dispatch import resend
from datapipe.models import PipelineChunk, PipelineError, PipelineRun
from tests.testapp.models import ResultItem, SourceItem

WAIT = 60


def make_items(behaviours, number=1):
    return [SourceItem.objects.create(behaviour=b, number=number) for b in behaviours]


def outputs_per_source():
    return Counter(ResultItem.objects.exclude(source=None).values_list("source_id", flat=True))


def test_every_item_is_processed_exactly_once(celery_worker):
    items = make_items(["ok"] * 200)

    handle = get_session().run_in_celery(SourceItem.objects.all(), "flow", celery_chunksize=7,
                                         queue=celery_worker.queue)
    run = handle.wait(timeout=WAIT)

    assert outputs_per_source() == Counter(item.pk for item in items)
    assert (run.status, run.processed, run.succeeded) == ("done", 200, 200)
    assert (run.chunks_total, run.chunks_done) == (29, 29)
    assert set(run.chunks.values_list("status", flat=True)) == {"done"}
    assert sum(run.chunks.values_list("processed", flat=True)) == 200


def test_a_second_run_replaces_the_outputs_of_the_first(celery_worker):
    items = make_items(["ok"] * 20)
    session = get_session()
    for _ in range(2):
        session.run_in_celery(SourceItem.objects.all(), "flow", celery_chunksize=3,
                              queue=celery_worker.queue).wait(timeout=WAIT)

    assert outputs_per_source() == Counter(item.pk for item in items)


def test_lists_of_instances_and_json_values_are_sent_too(celery_worker):
    items = make_items(["ok"] * 5)
    session = get_session()

    instances = session.run_in_celery(items, "flow", celery_chunksize=2,
                                      queue=celery_worker.queue).wait(timeout=WAIT)
    values = session.run_in_celery([{"n": 1}, {"n": 0}, {"n": -1}, {"n": 2}], "values",
                                   celery_chunksize=3, queue=celery_worker.queue).wait(WAIT)

    assert (instances.processed, instances.succeeded) == (5, 5)
    assert (values.processed, values.succeeded, values.ignored, values.errored) == (4, 2, 1, 1)
    assert PipelineError.objects.get(pipeline_name="values").item_value == {"n": -1}


def test_finish_run_is_called_once_after_the_last_chunk_with_each_chunks_context(
    celery_worker,
):
    for number in range(1, 41):
        SourceItem.objects.create(number=number)

    handle = get_session().run_in_celery(SourceItem.objects.all(), "dist.sum",
                                         celery_chunksize=3, queue=celery_worker.queue)
    run = handle.wait(timeout=WAIT)

    assert run.status == "done", run.message
    assert list(ResultItem.objects.filter(source=None).values_list("number", "unique_key")) == [
        (820.0, f"sum-{run.pk}")
    ]


def test_the_context_sent_with_the_run_reaches_every_chunk(celery_worker):
    items = make_items(["ok"] * 10)
    skipped = [items[1].pk, items[6].pk]
    session = get_session(context={"skip": skipped})

    run = session.run_in_celery(SourceItem.objects.all(), "flow", celery_chunksize=4,
                                queue=celery_worker.queue).wait(timeout=WAIT)

    assert run.processed == 8
    assert set(outputs_per_source()) == {item.pk for item in items} - set(skipped)


def test_a_break_stops_only_the_rest_of_its_chunk(celery_worker):
    items = make_items(["ok", "break", "ok", "ok", "ok", "ok"])

    run = get_session().run_in_celery(SourceItem.objects.all(), "flow", celery_chunksize=3,
                                      queue=celery_worker.queue).wait(timeout=WAIT)

    assert run.broke
    assert set(outputs_per_source()) == {items[0].pk, items[3].pk, items[4].pk, items[5].pk}


def test_a_chunk_that_fails_as_a_whole_records_its_items_then_can_be_sent_again(celery_worker):
    items = make_items(["ok", "ok", "pipe_error", "ok"])
    session = get_session()

    handle = session.run_in_celery(SourceItem.objects.all(), "flow", celery_chunksize=2,
                                   queue=celery_worker.queue)
    run = handle.wait(timeout=WAIT)

    assert run.status == "failed"
    failed = run.chunks.get(status=PipelineChunk.Status.FAILED)
    assert failed.index == 1
    assert sorted(PipelineError.objects.values_list("item_id", flat=True)) == sorted(
        str(item.pk) for item in items[2:])
    assert set(outputs_per_source()) == {items[0].pk, items[1].pk}
    assert (run.processed, run.errored) == (4, 2)

    SourceItem.objects.filter(behaviour="pipe_error").update(behaviour="ok")
    assert resend(run.pk) == 1
    run = handle.wait(timeout=WAIT)

    assert (run.status, run.processed, run.succeeded, run.errored) == ("done", 4, 4, 0)
    assert outputs_per_source() == Counter(item.pk for item in items)


def test_lost_chunks_are_sent_again(start_worker, celery_queue):
    items = make_items(["ok"] * 12)
    handle = get_session().run_in_celery(SourceItem.objects.all(), "flow", celery_chunksize=5,
                                         queue=celery_queue + "-nobody-listens")
    with pytest.raises(TimeoutError):
        handle.wait(timeout=0.5)
    worker = start_worker(celery_queue)

    assert resend(handle.id, stale_after=0, queue=worker.queue) == 3
    run = handle.wait(timeout=WAIT)

    assert (run.status, run.processed, run.chunks_done) == ("done", 12, 3)
    assert outputs_per_source() == Counter(item.pk for item in items)
    assert resend(handle.id, stale_after=0) == 0


def test_workers_keep_their_database_connection_across_chunks(celery_worker):
    make_items(["ok"] * 24)

    get_session().run_in_celery(SourceItem.objects.all(), "dist.backend", celery_chunksize=1,
                                queue=celery_worker.queue).wait(timeout=WAIT)

    backends = set(ResultItem.objects.values_list("number", flat=True))
    assert len(backends) <= celery_worker.concurrency


def test_progress_tells_how_far_a_run_is(celery_worker):
    make_items(["ok", "ok", "error"])
    handle = get_session().run_in_celery(SourceItem.objects.all(), "flow", celery_chunksize=2,
                                         queue=celery_worker.queue)
    handle.wait(timeout=WAIT)

    progress = handle.progress()

    assert {key: progress[key] for key in (
        "status", "chunks_total", "chunks_done", "processed", "succeeded", "continued",
        "ignored", "errored", "chunks")} == {
        "status": "done", "chunks_total": 2, "chunks_done": 2, "processed": 3,
        "succeeded": 2, "continued": 0, "ignored": 0, "errored": 1, "chunks": {"done": 2}}
    assert PipelineRun.objects.get(pk=handle.id).distributed
