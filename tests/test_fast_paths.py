"""The engine's fast paths keep reparse exact: a first run skips the look-up of old
outputs only when no item can have any; the look-up, the COPY text and the collector's
frozen heap behave as the slow ways did."""

import datetime
import gc

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from datapipe import Pipe, get_session, pipeline
from datapipe.bulk import insert_rows
from datapipe.heap import frozen_heap
from datapipe.identity import content_type_id
from datapipe.models import PipelineError, PipelineTrack
from datapipe.tracking import _TRACK_FIELDS
from tests.testapp.models import ResultItem, SourceItem

pytestmark = pytest.mark.django_db


@pytest.fixture
def outputs_pipe(isolated_registry):
    """``fast.outputs``: ``self.context.per_item`` ResultItems per item (default 1)."""

    @pipeline("fast.outputs")
    class Outputs(Pipe):
        def process(self):
            item = super().process()
            for _ in range(self.context.get("per_item", 1)):
                self.add_to_save(ResultItem(source=item, number=item.number))
            return item

    return "fast.outputs"


def look_ups(queries) -> int:
    """Queries that read the pipeline's trackers by item (not the one probe of whether
    it has any, nor the look-up of what was derived from deleted outputs)."""
    return sum(
        1 for q in queries.captured_queries
        if PipelineTrack._meta.db_table in q["sql"] and q["sql"].lstrip().startswith("SELECT")
        and "item_id" in q["sql"] and "pipeline_name" in q["sql"]
    )


def counts_per_source():
    return sorted(ResultItem.objects.values_list("source_id", flat=True))


def run(name, items, **options):
    report = get_session(progress=False, chunksize=2, **options).run(items, name)
    assert (report.errored, PipelineError.objects.count()) == (0, 0)
    return report


def test_a_first_run_over_a_queryset_looks_no_old_outputs_up_and_a_rerun_does(outputs_pipe):
    items = SourceItem.objects.bulk_create([SourceItem(number=n) for n in range(5)])
    with CaptureQueriesContext(connection) as first:
        run(outputs_pipe, SourceItem.objects.all())
    with CaptureQueriesContext(connection) as second:
        run(outputs_pipe, SourceItem.objects.all())
    assert look_ups(first) == 0
    assert look_ups(second) == 3  # one per flush of 2 items
    assert counts_per_source() == sorted(item.pk for item in items)  # replaced, once each
    assert PipelineTrack.objects.filter(pipeline_name=outputs_pipe).count() == 5


@pytest.mark.parametrize("why", ["list", "not atomic"])
def test_runs_that_may_meet_an_item_twice_look_old_outputs_up(outputs_pipe, why):
    items = SourceItem.objects.bulk_create([SourceItem(number=n) for n in range(4)])
    given, options = SourceItem.objects.all(), {}
    if why == "list":
        given = [*items, items[0]]  # the first item again, in a later batch
    else:  # other runs may write trackers between its transactions
        options = {"atomic": False}
    with CaptureQueriesContext(connection) as queries:
        run(outputs_pipe, given, **options)
    assert look_ups(queries) >= 1
    assert counts_per_source() == sorted(item.pk for item in items)


def test_an_item_met_twice_in_a_join_across_flushes_keeps_one_set_of_outputs(outputs_pipe):
    item = SourceItem.objects.create(number=7)
    marks = ResultItem.objects.bulk_create([ResultItem(number=-1), ResultItem(number=-1)])
    # Two rows of the join are the same item; with 2 outputs each and batches of 2, the
    # second meeting is flushed after the first.
    item.resultitem_set.set(marks)
    given = SourceItem.objects.filter(resultitem__number=-1)
    assert [i.pk for i in given] == [item.pk, item.pk]
    get_session(progress=False, chunksize=2, context={"per_item": 2}).run(given, outputs_pipe)
    made = ResultItem.objects.filter(source=item).exclude(pk__in=[m.pk for m in marks])
    assert made.count() == 2
    assert PipelineTrack.objects.filter(pipeline_name=outputs_pipe).count() == 1


def test_keyed_and_model_trackers_are_found_apart(outputs_pipe):
    from datapipe.tracking import Tracker

    item = SourceItem.objects.create()
    type_id = content_type_id(SourceItem)
    now = timezone.now()
    insert_rows(PipelineTrack, _TRACK_FIELDS, [
        (outputs_pipe, type_id, str(item.pk), {"testapp.resultitem": [1]}, "", now),
        (outputs_pipe, None, str(item.pk), {"testapp.resultitem": [2]}, "", now),
    ], "default")
    tracker = Tracker(outputs_pipe, "default")
    assert [outputs for _, outputs in tracker._rows_of(type_id, [str(item.pk), "x"])] == [
        {"testapp.resultitem": [1]}]
    assert [outputs for _, outputs in tracker._rows_of(None, [str(item.pk)])] == [
        {"testapp.resultitem": [2]}]


def test_copied_text_keeps_tabs_newlines_and_backslashes():
    type_id = content_type_id(SourceItem)
    awkward = "tab\there\nnew line\\back\rreturn"
    outputs = {"text": [awkward], "testapp.resultitem": [1]}
    insert_rows(PipelineTrack, _TRACK_FIELDS,
                [("p\t1", type_id, awkward, outputs, "", timezone.now())], "default")
    row = PipelineTrack.objects.get()
    assert (row.pipeline_name, row.item_id, row.outputs) == ("p\t1", awkward, outputs)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="COPY is PostgreSQL's")
def test_values_copy_does_not_write_as_text_are_adapted():
    naive = datetime.datetime(2026, 1, 2, 3, 4, 5)  # no time zone: not written as text
    insert_rows(PipelineTrack, _TRACK_FIELDS,
                [("p", content_type_id(SourceItem), "1", {}, "", naive)], "default")
    assert PipelineTrack.objects.get().updated_at.replace(tzinfo=None) == naive


def test_the_heap_is_frozen_during_runs_and_given_back_after(isolated_registry):
    seen = []

    @pipeline("fast.heap")
    class Heap(Pipe):
        def process(self):
            seen.append(gc.get_freeze_count())
            if self.item == 1:  # a run nested in this one
                get_session(progress=False).run([2], "fast.heap")
            return super().process()

    assert gc.get_freeze_count() == 0
    get_session(progress=False).run([1, 3], "fast.heap")
    assert len(seen) == 3 and all(count > 0 for count in seen)
    assert gc.get_freeze_count() == 0


def test_a_heap_frozen_by_the_process_stays_frozen():
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with frozen_heap():
            pass
        assert gc.get_freeze_count() >= frozen > 0
    finally:
        gc.unfreeze()


@pytest.mark.parametrize("when", [timezone.now(), datetime.datetime(2026, 1, 2, 3, 4, 5)])
def test_rows_take_the_values_they_share(when):
    type_id = content_type_id(SourceItem)
    insert_rows(PipelineTrack, ("item_content_type_id", "item_id", "outputs"),
                [(type_id, "1", {"a.b": [1]}), (None, "k\t2", {"a.b": [2]})], "default",
                same={"pipeline_name": "p", "triggered_by": "t", "updated_at": when})
    rows = PipelineTrack.objects.order_by("item_id").values_list(
        "pipeline_name", "triggered_by", "item_content_type_id", "item_id", "outputs")
    assert list(rows) == [("p", "t", type_id, "1", {"a.b": [1]}),
                          ("p", "t", None, "k\t2", {"a.b": [2]})]
