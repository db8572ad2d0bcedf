"""Cutting items into chunks and sending them: what happens in the caller's process.

The encoding tests need no broker and run on SQLite too; the ones that look at the
queue in Redis skip where the Celery tests skip.
"""

import uuid

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from datapipe import ItemNotSerializable, get_session
from datapipe.distributed.chunks import decode_chunk, encode_chunks
from datapipe.models import PipelineChunk, PipelineRun
from tests.testapp.models import CodeItem, SourceItem, UUIDItem
from tests.workers import broker_url, require_celery


@pytest.mark.parametrize("item", [object(), {"when": uuid.uuid4()}, SourceItem(number=1)],
                         ids=["object", "dict with a UUID", "unsaved instance"])
def test_an_item_that_cannot_be_encoded_raises_before_anything_is_written_or_sent(db, item):
    items = [{"n": 1}] * 25 + [item]

    with pytest.raises(ItemNotSerializable, match="Item 25 .* cannot be sent to Celery"):
        get_session().run_in_celery(items, "values", celery_chunksize=10, queue="nowhere")

    assert not PipelineRun.objects.exists()
    assert not PipelineChunk.objects.exists()


def test_a_context_that_is_not_json_is_refused_before_anything_is_written(db):
    session = get_session(context={"when": object()})

    with pytest.raises(TypeError, match="context must be JSON-encodable"):
        session.run_in_celery([{"n": 1}], "values", queue="nowhere")

    assert not PipelineRun.objects.exists()


def test_a_queryset_is_read_as_primary_keys_by_keyset_pages(db):
    pks = [SourceItem.objects.create().pk for _ in range(25)]

    with CaptureQueriesContext(connection) as queries:
        chunks = list(encode_chunks(SourceItem.objects.all(), size=4, page=10))

    assert [pk for chunk in chunks for pk in chunk["pks"]] == pks
    assert [len(chunk["pks"]) for chunk in chunks] == [4] * 6 + [1]
    reads = [q["sql"] for q in queries if "testapp_sourceitem" in q["sql"]]
    assert len(reads) == 3
    assert all("LIMIT 10" in sql and '"behaviour"' not in sql for sql in reads)


def test_chunks_decode_to_the_items_they_were_made_of(db):
    sources = [SourceItem.objects.create(number=n) for n in range(3)]
    uuids = [UUIDItem.objects.create(number=n) for n in range(2)]
    codes = [CodeItem.objects.create(code=f"c{n}") for n in range(2)]
    mixed = [uuids[1], {"n": 1}, codes[0], sources[2], [1, "two"]]

    def round_trip(items, size=10):
        chunks = encode_chunks(items, size)
        return [item for chunk in chunks for item in decode_chunk(chunk, "default")]

    assert round_trip(SourceItem.objects.order_by("-pk"), size=2) == sources
    assert round_trip(list(reversed(uuids))) == list(reversed(uuids))
    assert round_trip(codes) == codes
    assert round_trip(mixed) == mixed
    values = SourceItem.objects.order_by("pk").values("number")
    assert round_trip(values) == [{"number": n} for n in range(3)]


def test_chunks_of_deleted_rows_leave_those_rows_out(db):
    sources = [SourceItem.objects.create() for _ in range(3)]
    (chunk,) = encode_chunks(sources, 3)
    sources[1].delete()

    assert decode_chunk(chunk, "default") == [sources[0], sources[2]]


def queued(queue):
    import redis

    return redis.Redis.from_url(broker_url()).llen(queue)


def test_inside_a_transaction_chunks_are_sent_when_it_commits(celery_queue):
    require_celery()
    SourceItem.objects.create()

    with transaction.atomic():
        handle = get_session().run_in_celery(SourceItem.objects.all(), "flow",
                                             queue=celery_queue)
        assert queued(celery_queue) == 0

    assert queued(celery_queue) == 1
    assert handle.run.chunks.get().status == "dispatched"


def test_nothing_is_sent_when_the_transaction_rolls_back(celery_queue):
    SourceItem.objects.create()

    with pytest.raises(RuntimeError), transaction.atomic():
        get_session().run_in_celery(SourceItem.objects.all(), "flow", queue=celery_queue)
        raise RuntimeError("rolled back")

    assert queued(celery_queue) == 0
    assert not PipelineRun.objects.exists()


def test_an_empty_run_finishes_at_once(celery_queue):
    run = get_session().run_in_celery(SourceItem.objects.none(), "flow",
                                      queue=celery_queue).wait(timeout=5)

    assert (run.status, run.chunks_total, run.processed) == ("done", 0, 0)
    assert queued(celery_queue) == 0


def test_the_chunk_size_must_be_a_positive_integer(db):
    with pytest.raises(ValueError, match="celery_chunksize"):
        get_session().run_in_celery([{"n": 1}], "values", celery_chunksize=0)
