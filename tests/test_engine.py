"""The item loop: the flow-control table, sessions, transactions, batching, reports."""

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from datapipe import (
    InvalidItems,
    Pipe,
    PipeError,
    PipelineNotFound,
    get_session,
    pipeline,
)
from datapipe.models import PipelineRun
from tests.testapp.models import Note, ResultItem, SourceItem

pytestmark = pytest.mark.django_db


def make_items(*behaviours, number=1):
    return SourceItem.objects.bulk_create(
        [SourceItem(number=number, behaviour=b) for b in behaviours]
    )


def outputs_of(items):
    return sorted(ResultItem.objects.filter(source__in=items).values_list("source_id", flat=True))


# The flow-control table -----------------------------------------------------------------


def test_succeeded_items_keep_their_outputs_and_results(session):
    items = make_items("ok", "ok")
    report = session.run(SourceItem.objects.all(), "flow")
    assert (report.processed, report.succeeded) == (2, 2)
    assert outputs_of(items) == [items[0].pk, items[1].pk]
    assert sorted(r.source_id for r in report.results) == [items[0].pk, items[1].pk]


def test_continued_item_keeps_changes_and_outputs_and_its_value_is_collected(session):
    items = make_items("continue", "ok")
    report = session.run(SourceItem.objects.all(), "flow")
    assert (report.continued, report.succeeded) == (1, 1)
    assert outputs_of(items) == [items[0].pk, items[1].pk]
    assert len(report.results) == 2


def test_continue_without_value_collects_the_item(session, isolated_registry):
    @pipeline("test.continue_item")
    class ContinueItem(Pipe):
        def process(self):
            self.continue_()

    items = make_items("ok")
    report = get_session(keep_results=True).run(SourceItem.objects.all(), "test.continue_item")
    assert report.results == items


def test_ignored_item_is_rolled_back_and_counted(session):
    items = make_items("query_ignore", "ok")
    report = session.run(SourceItem.objects.all(), "flow")
    assert (report.ignored, report.succeeded) == (1, 1)
    assert outputs_of(items) == [items[1].pk]
    items[0].refresh_from_db()
    assert items[0].touched == 0  # its query was rolled back


def test_break_rolls_back_the_item_keeps_earlier_ones_and_runs_finish(session, isolated_registry):
    finished = []

    @pipeline("test.break")
    class Breaking(Pipe):
        def process(self):
            if self.item.behaviour == "break":
                SourceItem.objects.filter(pk=self.item.pk).update(touched=1)
                self.break_()
            self.add_to_save(ResultItem(source=self.item))
            return self.item

        def finish(self, results):
            finished.append(len(results))

    items = make_items("ok", "break", "ok")
    report = session.run(SourceItem.objects.all(), "test.break")
    assert report.broke and report.processed == 2 and report.succeeded == 1
    assert outputs_of(items) == [items[0].pk]
    assert finished == [1]
    assert SourceItem.objects.get(pk=items[1].pk).touched == 0


@pytest.mark.parametrize("atomic", [True, False])
def test_pipe_error_rolls_the_run_back_and_reaches_the_caller(atomic):
    items = make_items("query", "ok", "pipe_error", "ok")
    with pytest.raises(PipeError):
        get_session(atomic=atomic, chunksize=100).run(SourceItem.objects.all(), "flow")
    assert ResultItem.objects.count() == 0
    assert SourceItem.objects.get(pk=items[0].pk).touched == 0
    assert PipelineRun.objects.get(pipeline_name="flow").status == "failed"


def test_unhandled_exception_rolls_the_item_back_and_is_collected(session):
    items = make_items("query_error", "ok")
    report = session.run(SourceItem.objects.all(), "flow")
    assert (report.errored, report.succeeded) == (1, 1)
    assert outputs_of(items) == [items[1].pk]
    assert SourceItem.objects.get(pk=items[0].pk).touched == 0
    assert [type(e.exception) for e in report.errors] == [ValueError]


def test_debug_reraises_and_rolls_the_run_back():
    make_items("ok", "error", "ok")
    with pytest.raises(ValueError, match="bad item"):
        get_session(debug=True).run(SourceItem.objects.all(), "flow")
    assert ResultItem.objects.count() == 0


def test_item_that_queries_keeps_its_changes_when_it_succeeds(session):
    items = make_items("query")
    session.run(SourceItem.objects.all(), "flow")
    assert SourceItem.objects.get(pk=items[0].pk).touched == 1


# Savepoints only for items that query -------------------------------------------------------


def count_savepoints(queries):
    # A query may hold several statements ("RELEASE SAVEPOINT a; SAVEPOINT a").
    statements = [s.strip().upper() for q in queries for s in q["sql"].split(";")]
    return sum(1 for statement in statements if statement.startswith("SAVEPOINT"))


def test_items_without_queries_open_no_savepoint_of_their_own():
    make_items(*["ok"] * 30)
    with CaptureQueriesContext(connection) as few:
        get_session(chunksize=1000).run(SourceItem.objects.all(), "flow.untracked")
    make_items(*["ok"] * 300)
    with CaptureQueriesContext(connection) as many:
        get_session(chunksize=1000).run(SourceItem.objects.all(), "flow.untracked")
    assert count_savepoints(many.captured_queries) == count_savepoints(few.captured_queries)


def test_items_that_query_get_one_savepoint_each():
    make_items(*["query"] * 10)
    with CaptureQueriesContext(connection) as queries:
        get_session(chunksize=1000).run(SourceItem.objects.all(), "flow.untracked")
    assert count_savepoints(queries.captured_queries) >= 10
    assert all(i.touched == 1 for i in SourceItem.objects.all())


# Sessions: atomic, chunksize, context, options ----------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_non_atomic_run_commits_each_batch_before_a_pipe_error():
    make_items("ok", "ok", "ok", "pipe_error", "ok")
    with pytest.raises(PipeError):
        get_session(atomic=False, chunksize=2).run(SourceItem.objects.all(), "flow.untracked")
    assert ResultItem.objects.count() == 2  # the first batch committed; the second rolled back


@pytest.mark.django_db(transaction=True)
def test_atomic_run_commits_nothing_before_a_pipe_error():
    make_items("ok", "ok", "ok", "pipe_error", "ok")
    with pytest.raises(PipeError):
        get_session(atomic=True, chunksize=2).run(SourceItem.objects.all(), "flow.untracked")
    assert ResultItem.objects.count() == 0


def test_queryset_is_read_in_keyset_pages_of_chunksize():
    make_items(*["ok"] * 25)
    with CaptureQueriesContext(connection) as queries:
        report = get_session(chunksize=10).run(SourceItem.objects.all(), "flow.untracked")
    assert report.processed == 25
    pages = [q["sql"] for q in queries.captured_queries
             if 'FROM "testapp_sourceitem"' in q["sql"] and q["sql"].startswith("SELECT")]
    assert len(pages) == 3
    assert all("LIMIT 10" in sql for sql in pages)
    assert sum('"id" >' in sql for sql in pages) == 2


def test_items_are_processed_in_primary_key_order(isolated_registry):
    seen = []

    @pipeline("test.order")
    class Order(Pipe):
        def process(self):
            seen.append(self.item.pk)

    items = make_items(*["ok"] * 7)
    get_session(chunksize=3).run(SourceItem.objects.order_by("-number", "-pk"), "test.order")
    assert seen == [i.pk for i in items]


def test_flush_happens_every_chunksize_outputs():
    make_items(*["ok"] * 7)
    with CaptureQueriesContext(connection) as queries:
        get_session(chunksize=3).run(SourceItem.objects.all(), "flow.untracked")
    inserts = [q for q in queries.captured_queries
               if q["sql"].startswith(('INSERT INTO "testapp_resultitem"',
                                       'COPY "testapp_resultitem"'))]
    assert len(inserts) == 3  # 3 + 3 + 1
    assert ResultItem.objects.count() == 7


def test_context_is_shared_and_readable_after_the_run():
    sess = get_session(context={"seed": 5})
    make_items("ok", "ok", number=10)
    sess.run(SourceItem.objects.all(), "discount_sum")
    assert sess.context.seed == 5
    assert sess.context.total == pytest.approx((10 * 0.99 + 10) * 0.99)


def test_discount_sum_example_of_the_contract_saves_running_totals(session):
    make_items("ok", "ok", "ok", number=100)
    report = session.run(SourceItem.objects.all(), "discount_sum")
    assert report.succeeded == 3
    totals = sorted(ResultItem.objects.values_list("number", flat=True))
    # self.total is taken before DiscountSum applies the discount to the context.
    assert totals == pytest.approx([100.0, 99.0 + 100, 99.0 * 1.99 + 100])


def test_containers_self_local_and_context(session):
    make_items("ok", "ok", "ok")
    report = session.run(SourceItem.objects.all(), "counting")
    assert session.context.counted == 3
    assert session.context.per_item == [1, 1, 1]  # attributes on self live for one item
    assert session.context.results == 3  # finish overridden: results are collected
    assert report.results  # and reported


def test_local_is_cleared_after_finish(isolated_registry):
    seen = []

    @pipeline("test.local")
    class Local(Pipe):
        def prepare(self, items):
            seen.append(dict(self.local))
            self.local.here = True
            return items

    sess = get_session()
    sess.run([1], "test.local")
    sess.run([1], "test.local")
    assert seen == [{}, {}]


def test_results_are_not_held_when_nothing_consumes_them(session):
    make_items("ok", "ok")
    assert session.run(SourceItem.objects.all(), "flow.untracked").results == []
    kept = get_session(keep_results=True).run(SourceItem.objects.all(), "flow.untracked")
    assert len(kept.results) == 2


def test_report_counts_time_and_run_record(session):
    make_items("ok", "ignore", "error", "continue")
    report = session.run(SourceItem.objects.all(), "flow")
    counts = (report.processed, report.succeeded, report.ignored, report.errored, report.continued)
    assert counts == (4, 1, 1, 1, 1)
    assert report.elapsed > 0
    record = PipelineRun.objects.get(pk=report.run_id)
    assert (record.status, record.processed, record.errored, record.ignored) == ("done", 4, 1, 1)
    assert record.finished_at is not None
    assert "4 processed" in str(report)


# Arguments and bad input ------------------------------------------------------------------


def test_name_first_is_accepted_too(session):
    make_items("ok")
    assert session.run("flow", SourceItem.objects.all()).succeeded == 1


def test_default_pipeline_name_comes_from_the_queryset(session):
    make_items("ok")
    assert session.run(SourceItem.objects.all()).pipeline == "flow"


def test_default_pipeline_name_comes_from_the_first_item(session, isolated_registry):
    class Named:
        def get_default_pipe_name(self):
            return "test.named"

    @pipeline("test.named")
    class NamedPipe(Pipe):
        pass

    report = session.run(iter([Named(), Named()]))
    assert (report.pipeline, report.processed) == ("test.named", 2)


def test_no_name_and_no_default_is_a_clear_error(session):
    with pytest.raises(InvalidItems, match="get_default_pipe_name"):
        session.run([1, 2])


def test_unknown_pipeline_names_close_matches(session):
    with pytest.raises(PipelineNotFound, match="'flow.derived'"):
        session.run([], "flow.derive")


@pytest.mark.parametrize("items", ["abc", {"a": 1}, 42, None])
def test_items_must_be_a_queryset_or_an_iterable(session, items):
    with pytest.raises(InvalidItems):
        session.run(items, "values")


def test_a_single_model_instance_is_refused(session):
    (item,) = make_items("ok")
    with pytest.raises(InvalidItems, match="single SourceItem"):
        session.run(item, "flow")


def test_prepare_returning_none_is_a_clear_error(session, isolated_registry):
    @pipeline("test.prepare_none")
    class Forgetful(Pipe):
        def prepare(self, items):
            super().prepare(items)

    with pytest.raises(InvalidItems, match="prepare\\(\\) returned None"):
        session.run([1], "test.prepare_none")


def test_chunksize_must_be_positive():
    with pytest.raises(ValueError, match="chunksize"):
        get_session(chunksize=0)


# The buffer ----------------------------------------------------------------------------------


def test_a_failing_insert_fails_only_the_item_that_buffered_it(session):
    items = make_items("ok", "duplicate", "ok", "duplicate", "ok")
    report = get_session(chunksize=100).run(SourceItem.objects.all(), "flow.untracked")
    # The first "duplicate" inserts; the second collides with it at the flush.
    assert report.errored == 1 and report.succeeded == 4
    assert outputs_of(items) == [items[0].pk, items[1].pk, items[2].pk, items[4].pk]
    assert "IntegrityError" in report.errors[0].error_type


def test_buffered_objects_may_point_to_buffered_objects_of_an_earlier_model(session):
    items = make_items("note", "note")
    session.run(SourceItem.objects.all(), "flow")
    assert Note.objects.count() == 2
    assert sorted(Note.objects.values_list("result__source_id", flat=True)) == [i.pk for i in items]


def test_direct_saves_happen_at_once(session, isolated_registry):
    pks = []

    @pipeline("test.direct")
    class Direct(Pipe):
        def process(self):
            parent = self.add_to_save(ResultItem(number=1), direct=True)
            pks.append(parent.pk)
            self.add_to_save(Note(result=parent, text="child"))

    session.run([1, 2], "test.direct")
    assert all(pks)
    assert sorted(Note.objects.values_list("result_id", flat=True)) == sorted(pks)


def test_atomic_block_around_the_caller_is_respected(session):
    make_items("ok")
    with transaction.atomic():
        session.run(SourceItem.objects.all(), "flow")
        assert ResultItem.objects.count() == 1


def test_a_database_error_in_an_item_leaves_the_transaction_usable(session, isolated_registry):
    @pipeline("test.db_error")
    class DbError(Pipe):
        def process(self):
            ResultItem.objects.create(unique_key=self.item.behaviour)  # "same" collides
            return self.item

    make_items("same", "same", "other")
    report = session.run(SourceItem.objects.all(), "test.db_error")
    assert (report.succeeded, report.errored) == (2, 1)
    assert sorted(ResultItem.objects.values_list("unique_key", flat=True)) == ["other", "same"]
    assert "IntegrityError" in report.errors[0].error_type


def test_progress_bar_counts_items_on_stderr(capsys):
    make_items("ok", "ok", "ok")
    get_session(progress=True).run(SourceItem.objects.all(), "flow.untracked")
    err = capsys.readouterr().err
    assert "flow.untracked" in err and "3/3" in err


def test_memory_stays_flat_in_the_number_of_rows():
    import tracemalloc

    def peak_for(count):
        SourceItem.objects.all().delete()
        SourceItem.objects.bulk_create([SourceItem() for _ in range(count)], batch_size=2000)
        tracemalloc.start()
        try:
            get_session(chunksize=200).run(SourceItem.objects.all(), "flow.untracked")
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    small, large = peak_for(1000), peak_for(10000)
    # Ten times the rows: the peak stays within pages of chunksize, not the row count.
    assert large < small * 2


def test_finish_run_is_called_once_after_finish_with_the_filled_run_record(isolated_registry):
    calls = []

    @pipeline("test.finish_run")
    class FinishRun(Pipe):
        def finish(self, results):
            calls.append(("finish", len(results)))

        def finish_run(self, run):
            calls.append(("finish_run", run.pk, run.processed, run.errored))

    report = get_session().run([1, 2, 3], "test.finish_run")
    assert calls == [("finish", 3), ("finish_run", report.run_id, 3, 0)]
