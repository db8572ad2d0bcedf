"""``Pipe.add_to_update``: updates buffered per item, written in bulk at the flush, each
failure its item's alone."""

import pytest
from django.db import connection
from django.db.models import F
from django.test.utils import CaptureQueriesContext

from datapipe import InvalidOutput, Pipe, get_session
from datapipe.buffer import SaveBuffer
from datapipe.models import PipelineError as ErrorRow
from datapipe.models import PipelineRun
from datapipe.updates import apply_updates
from tests.testapp.models import ResultItem, SourceItem, Tally
from tests.testapp.update_pipes import SEEN_AT, UpdateItems, token_of

pytestmark = pytest.mark.django_db


def make_items(*behaviours):
    return SourceItem.objects.bulk_create([SourceItem(behaviour=b) for b in behaviours])


def make_tallies(count):
    return Tally.objects.bulk_create([Tally(label=f"t{i}", count=i) for i in range(count)])


def touched(items):
    return list(
        SourceItem.objects.filter(pk__in=[i.pk for i in items])
        .order_by("pk")
        .values_list("touched", flat=True)
    )


def updates_of(queries, table):
    return [q["sql"] for q in queries if q["sql"].startswith(f'UPDATE "{table}"')]


def run(name, items, **options):
    return get_session(progress=False, **options).run(items, name)


# Written in bulk --------------------------------------------------------------------------


def test_updates_are_written_at_the_flush_in_one_statement_per_model_and_fields():
    items = make_items(*["ok"] * 5)
    with CaptureQueriesContext(connection) as queries:
        report = run("update.items", SourceItem.objects.all())
    assert report.succeeded == 5
    assert touched(items) == [1] * 5
    assert len(updates_of(queries, "testapp_sourceitem")) == 1


@pytest.mark.postgresql
def test_on_postgresql_the_statement_sends_one_array_per_column(postgres_only):
    items = make_items("ok", "ok")
    with CaptureQueriesContext(connection) as queries:
        run("update.items", SourceItem.objects.all())
    [update] = updates_of(queries, "testapp_sourceitem")
    assert "unnest(%b::bigint[]) AS pk, unnest(%b::integer[]) AS c0" in update
    assert touched(items) == [1, 1]


def test_an_update_may_point_to_an_object_its_item_saved_with_add_to_save():
    tallies = make_tallies(3)
    with CaptureQueriesContext(connection) as queries:
        report = run("update.tally", Tally.objects.all())
    assert report.succeeded == 3
    assert len(updates_of(queries, "testapp_tally")) == 1
    for tally in Tally.objects.order_by("pk").select_related("result"):
        old = int(tally.label[1:])
        assert tally.result.number == old  # the ResultItem saved by its item
        assert tally.count == old + 1
        assert tally.data == {"count": old + 1, "quote": 'a "quoted" \\ text'}
        assert tally.seen_at == SEEN_AT
        assert tally.token == token_of(tally)
    assert len(tallies) == ResultItem.objects.count()


def test_the_last_update_of_a_row_wins():
    Tally.objects.create(label="shared", count=0)
    SourceItem.objects.bulk_create([SourceItem(number=n) for n in (5, 9, 3)])
    with CaptureQueriesContext(connection) as queries:
        run("update.shared", SourceItem.objects.all())
    assert Tally.objects.get(label="shared").count == 3
    assert len(updates_of(queries, "testapp_tally")) == 1


def test_the_last_update_of_each_field_of_a_row_wins_whatever_the_fields_given():
    tally = make_tallies(1)[0]
    first, second, third = (Tally.objects.get(pk=tally.pk) for _ in range(3))
    first.count = 1
    second.count, second.label = 2, "second"
    third.count = 3
    apply_updates(
        [(first, ("count",)), (second, ("count", "label")), (third, ("count",))], "default"
    )
    tally.refresh_from_db()
    assert (tally.count, tally.label) == (3, "second")


def test_an_expression_for_a_value_is_written_through_bulk_update():
    items = make_items("ok", "ok")
    for item in items:
        item.touched = F("touched") + 10
    with CaptureQueriesContext(connection) as queries:
        apply_updates([(item, ("touched",)) for item in items], "default")
    [update] = updates_of(queries, "testapp_sourceitem")
    assert "CASE" in update and "unnest" not in update
    assert touched(items) == [10, 10]


def test_a_row_deleted_before_the_flush_is_not_an_error():
    tally = make_tallies(1)[0]
    Tally.objects.filter(pk=tally.pk).delete()
    tally.count = 5
    apply_updates([(tally, ("count",))], "default")
    assert not Tally.objects.exists()


# Rolled back with its item ----------------------------------------------------------------


def test_an_item_that_raises_or_is_ignored_after_add_to_update_leaves_its_row_as_it_was():
    items = make_items("ok", "error", "ignore", "ok")
    report = run("update.items", SourceItem.objects.all())
    assert (report.succeeded, report.errored, report.ignored) == (2, 1, 1)
    assert touched(items) == [1, 0, 0, 1]


def test_an_item_that_breaks_after_add_to_update_leaves_its_row_and_stops_the_loop():
    items = make_items("ok", "break", "ok")
    report = run("update.items", SourceItem.objects.all())
    assert report.broke
    assert touched(items) == [1, 0, 0]


def test_an_update_failing_at_the_flush_fails_its_item_alone():
    items = make_items("ok", "null", "ok")
    report = run("update.items", SourceItem.objects.all())
    assert (report.succeeded, report.errored) == (2, 1)
    assert touched(items) == [1, 0, 1]
    assert SourceItem.objects.get(pk=items[1].pk).behaviour == "null"
    [error] = ErrorRow.objects.filter(pipeline_name="update.items")
    assert error.item_id == str(items[1].pk)
    assert error.error_type.endswith("IntegrityError")


FAILING_PLANS = {
    "a CHECK constraint": {"count": -1},
    "a unique constraint": {"label": "t0"},
    "a value that does not convert": {"count": "many"},
    "a value too long for its varchar": pytest.param(
        {"label": "x" * 11}, marks=pytest.mark.postgresql
    ),  # SQLite does not check lengths
}


@pytest.mark.parametrize("plan", FAILING_PLANS.values(), ids=FAILING_PLANS.keys())
def test_a_tally_whose_update_breaks_a_rule_fails_alone_and_keeps_its_old_row(plan):
    tallies = make_tallies(4)
    failing = tallies[2]
    report = run("update.tally", Tally.objects.all(), context={"plan": {str(failing.pk): plan}})
    assert (report.succeeded, report.errored) == (3, 1)
    [error] = ErrorRow.objects.filter(pipeline_name="update.tally")
    assert error.item_id == str(failing.pk)
    rows = {t.pk: t for t in Tally.objects.all()}
    assert (rows[failing.pk].count, rows[failing.pk].label) == (2, "t2")
    assert rows[failing.pk].result is None
    for tally in tallies:
        if tally is not failing:
            assert rows[tally.pk].count == tally.count + 1
            assert rows[tally.pk].result.number == tally.count
    assert ResultItem.objects.count() == 3  # the failed item's output is dropped too


def test_updates_are_counted_in_the_buffer_and_dropped_with_their_item():
    buffer = SaveBuffer("default")
    item = make_items("ok")[0]
    record = buffer.begin(item)
    buffer.update(item, ("touched",))
    buffer.update(item, ("number",))
    assert buffer.size == 2
    buffer.drop(record)
    assert (buffer.size, record.updates) == (0, [])


def test_a_batch_is_flushed_once_chunksize_writes_are_pending():
    make_tallies(4)
    with CaptureQueriesContext(connection) as queries:
        run("update.tally", Tally.objects.all(), chunksize=4)
    # Two writes per item (a ResultItem, an update): a flush after the second item.
    assert len(updates_of(queries, "testapp_tally")) == 2


# Reparse, eval, outside items ---------------------------------------------------------------


def test_reparse_replaces_the_outputs_and_never_deletes_the_updated_row():
    tallies = make_tallies(2)
    run("update.tally", Tally.objects.all())
    first = set(ResultItem.objects.values_list("pk", flat=True))
    run("update.tally", Tally.objects.all())
    assert Tally.objects.count() == 2
    rows = list(Tally.objects.order_by("pk").select_related("result"))
    assert [t.count for t in rows] == [t.count + 2 for t in tallies]
    assert [t.result.number for t in rows] == [t.count + 1 for t in tallies]
    assert not first & set(ResultItem.objects.values_list("pk", flat=True))
    assert ResultItem.objects.count() == 2


def test_eval_saves_the_update_at_once():
    item = make_items("ok")[0]
    assert UpdateItems.eval(item) == item
    assert touched([item]) == [1]


def test_an_update_in_finish_is_saved_by_the_last_flush():
    make_items("ok", "ok", "total")
    run("update.in_finish", SourceItem.objects.all())
    assert SourceItem.objects.get(behaviour="total").number == 3


# Refused ----------------------------------------------------------------------------------


def test_an_unsaved_object_is_refused_with_a_pointer_to_add_to_save():
    with pytest.raises(InvalidOutput, match="add_to_save"):
        Pipe().add_to_update(SourceItem(), fields=["touched"])


def test_something_else_than_a_model_instance_is_refused():
    with pytest.raises(InvalidOutput, match="saved model instance, not dict"):
        Pipe().add_to_update({"touched": 1}, fields=["touched"])


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ([], "non-empty list"),
        ("touched", "non-empty list"),
        (None, "non-empty list"),
        ([["touched"]], "non-empty list"),
        ([3], "testapp.SourceItem has no field 3"),
        (["touched", "colour"], "testapp.SourceItem has no field 'colour'"),
        (["id"], "'id' is the primary key of testapp.SourceItem"),
        (["resultitem"], "'resultitem' of testapp.SourceItem is not a column"),
    ],
)
def test_fields_that_cannot_be_updated_are_refused(fields, message):
    item = make_items("ok")[0]
    with pytest.raises(InvalidOutput, match=message):
        Pipe().add_to_update(item, fields=fields)


def test_a_foreign_key_may_be_named_by_its_attname():
    item, other = make_items("ok", "ok")
    result = ResultItem.objects.create(source=item)
    result.source_id = other.pk
    assert Pipe().add_to_update(result, fields=["source_id"]) is result
    assert ResultItem.objects.get().source == other


def test_add_to_update_in_fetch_is_refused():
    item = make_items("ok")[0]
    pipe = Pipe(item)
    pipe._fetching = True
    with pytest.raises(InvalidOutput, match="fetch"):
        pipe.add_to_update(item, fields=["touched"])


# Locally and in Celery ----------------------------------------------------------------------


def test_a_run_updates_its_items_and_attributes_failures(runner):
    items = make_items("ok", "error", "ok", "null", "ignore", "ok")
    run = runner.run("update.items")
    assert (run.succeeded, run.errored, run.ignored) == (3, 2, 1)
    assert touched(items) == [1, 0, 1, 0, 0, 1]
    assert sorted(ErrorRow.objects.values_list("item_id", flat=True)) == sorted(
        [str(items[1].pk), str(items[3].pk)]
    )
    assert PipelineRun.objects.get(pk=run.pk).status == "done"
