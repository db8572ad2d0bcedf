"""COPY inserts (PostgreSQL) behave as bulk_create: pks set, foreign keys, errors."""

import pytest
from django.db import IntegrityError, connection, transaction
from django.db.models import Value
from django.test.utils import CaptureQueriesContext

from datapipe.bulk import insert_objects, insert_rows
from datapipe.models import PipelineTrack
from datapipe.tracking import _TRACK_FIELDS
from tests.testapp.models import Note, ResultItem, SourceItem, Tally

pytestmark = pytest.mark.django_db


def test_inserted_objects_get_their_primary_keys_and_count_as_saved():
    source = SourceItem.objects.create(number=1)
    objs = [ResultItem(source=source, number=n) for n in range(5)]
    insert_objects(ResultItem, objs, "default")
    assert [o.pk for o in objs] == sorted(o.pk for o in objs)
    assert all(not o._state.adding and o._state.db == "default" for o in objs)
    saved = {o.pk: (o.number, o.source_id) for o in ResultItem.objects.all()}
    assert saved == {o.pk: (o.number, source.pk) for o in objs}


def test_objects_pointing_to_objects_inserted_just_before_get_their_keys():
    result = ResultItem(number=1)
    note = Note(result=result, text="about it")
    insert_objects(ResultItem, [result], "default")
    insert_objects(Note, [note], "default")
    assert Note.objects.get().result_id == result.pk


def test_a_duplicate_fails_with_djangos_integrity_error():
    ResultItem.objects.create(unique_key="taken")
    with pytest.raises(IntegrityError), transaction.atomic():
        insert_objects(ResultItem, [ResultItem(unique_key="taken")], "default")


def test_expressions_are_inserted_by_bulk_create():
    obj = ResultItem(number=Value(2.5))
    insert_objects(ResultItem, [obj], "default")
    assert ResultItem.objects.get().number == 2.5


def test_copy_is_used_on_postgresql_and_logged_as_a_query():
    with CaptureQueriesContext(connection) as queries:
        insert_objects(ResultItem, [ResultItem(number=1)], "default")
    copies = [q for q in queries.captured_queries if q["sql"].startswith("COPY")]
    assert len(copies) == (1 if connection.vendor == "postgresql" else 0)


def test_rows_are_inserted_with_json_values():
    from django.contrib.contenttypes.models import ContentType
    from django.utils import timezone

    content_type = ContentType.objects.get_for_model(SourceItem)
    fields = _TRACK_FIELDS  # the columns reparse writes
    outputs = {"testapp.resultitem": [1, 2], "text": ['quote " and \\ backslash']}
    insert_rows(
        PipelineTrack,
        fields,
        [("p", content_type.pk, "a,b", outputs, "", timezone.now())],
        "default",
    )
    row = PipelineTrack.objects.get()
    assert (row.item_id, row.outputs) == ("a,b", outputs)


@pytest.mark.parametrize(
    "data",
    [
        {"testapp.resultitem": [1, 2]},  # trackers' shape: written without json.dumps
        {"nested": {"a": [1.5, None, True]}, "text": "tab\there \\ \"quoted\""},
        {"bools": [True, False]},  # not ints, though bool is an int subclass
        ["a", "list"],
        "a string",
    ],
)
def test_inserted_objects_keep_every_kind_of_value(data):
    import datetime
    import uuid

    result = ResultItem.objects.create(number=1)
    seen = datetime.datetime(2026, 5, 6, 7, 8, 9, 123456, tzinfo=datetime.UTC)
    token = uuid.uuid4()
    objs = [
        Tally(label="a\tb\\c\nd", count=3, data=data, seen_at=seen, token=token, result=result),
        Tally(label=None, count=0, data={}, seen_at=None, token=None, result=None),
    ]
    insert_objects(Tally, objs, "default")
    rows = Tally.objects.order_by("pk").values_list(
        "label", "count", "data", "seen_at", "token", "result_id")
    assert list(rows) == [
        ("a\tb\\c\nd", 3, data, seen, token, result.pk),
        (None, 0, {}, None, None, None),
    ]


@pytest.mark.parametrize(
    "number", [float("inf"), pytest.param(float("nan"), marks=pytest.mark.postgresql), 1e300, 2.5]
)
def test_floats_copy_cannot_write_as_text_are_adapted(number):
    import math

    insert_objects(ResultItem, [ResultItem(number=number)], "default")
    saved = ResultItem.objects.get().number
    assert saved == number or (math.isnan(number) and math.isnan(saved))
