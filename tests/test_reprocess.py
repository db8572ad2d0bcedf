"""Reprocessing error rows: resolved on success, updated on failure, missing items reported."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

import datapipe
from datapipe import Pipe, PipeError, PipelineNotFound, get_session, pipeline
from datapipe.models import PipelineError
from tests.failing import failed_items, fix, open_rows
from tests.testapp.models import ResultItem, SourceItem

pytestmark = pytest.mark.django_db


def test_fixed_items_get_their_rows_resolved_and_their_outputs_saved():
    items = failed_items("error", "error", "ok")
    assert open_rows().count() == 2
    fix(items)

    result = datapipe.reprocess(PipelineError.objects.all())

    assert (result.rows, result.resolved, result.missing, result.still_open) == (2, 2, 0, 0)
    assert not open_rows().exists()
    assert all(row.resolved_at is not None for row in PipelineError.objects.all())
    assert ResultItem.objects.filter(source__in=items).count() == 3
    assert result.pipelines["flow"].reports[0].succeeded == 2


def test_items_that_fail_again_keep_their_open_row_with_one_more_attempt():
    failed_items("error", "error")

    result = datapipe.reprocess(open_rows())

    assert (result.rows, result.resolved, result.still_open) == (2, 0, 2)
    assert sorted(open_rows().values_list("attempts", flat=True)) == [2, 2]
    assert PipelineError.objects.count() == 2


def test_rows_of_deleted_items_are_flagged_missing_and_reported_not_crashed_on():
    items = failed_items("error", "error", "error")
    fix(items)
    deleted_pk = items[1].pk
    items[1].delete()

    result = datapipe.reprocess(open_rows())

    assert (result.rows, result.resolved, result.missing) == (2, 2, 1)
    missing = PipelineError.objects.get(item_id=str(deleted_pk))
    assert missing.item_missing and not missing.resolved
    assert "1 missing" in str(result)


def test_ignored_items_keep_their_rows_open():
    items = failed_items("error")
    fix(items, "ignore")

    result = datapipe.reprocess(open_rows())

    assert (result.rows, result.resolved, result.still_open) == (1, 0, 1)
    assert open_rows().get().attempts == 1


def test_resolved_rows_are_not_reprocessed():
    items = failed_items("error")
    fix(items)
    datapipe.reprocess(open_rows())

    result = datapipe.reprocess(PipelineError.objects.all())

    assert (result.rows, result.already_resolved) == (0, 1)
    assert result.pipelines == {}


def test_rows_are_reprocessed_each_under_its_own_pipeline():
    failed_items("error", pipeline="flow")
    failed_items("error", pipeline="flow.untracked")
    fix(SourceItem.objects.all())

    result = datapipe.reprocess(list(open_rows()))

    assert sorted(result.pipelines) == ["flow", "flow.untracked"]
    assert result.resolved == 2


def test_a_plain_rerun_resolves_the_rows_of_items_that_now_succeed(session):
    items = failed_items("error", "error")
    fix(items[:1])

    session.run(SourceItem.objects.all(), "flow")

    assert list(open_rows().values_list("item_id", flat=True)) == [str(items[1].pk)]


def test_a_run_rolled_back_by_pipe_error_resolves_nothing(session):
    items = failed_items("error")
    fix(items)
    SourceItem.objects.create(behaviour="pipe_error")

    with pytest.raises(PipeError):
        session.run(SourceItem.objects.all(), "flow")

    assert open_rows().count() == 1


def test_a_pipeline_without_open_rows_pays_one_query_for_resolving(session):
    SourceItem.objects.bulk_create([SourceItem() for _ in range(5)])
    with CaptureQueriesContext(connection) as queries:
        session.run(SourceItem.objects.all(), "flow.untracked")  # no trigger: one run
    touching_errors = [q["sql"] for q in queries.captured_queries if "pipelineerror" in q["sql"]]
    assert len(touching_errors) == 1  # the EXISTS check at the start of the run


def test_a_row_naming_an_unregistered_pipeline_stops_before_anything_runs():
    items = failed_items("error")
    fix(items)
    gone = PipelineError.objects.get()
    gone.pk = None
    gone.pipeline_name = "no.such.pipeline"
    gone.save()

    with pytest.raises(PipelineNotFound):
        datapipe.reprocess(PipelineError.objects.all())

    assert open_rows().count() == 2


# Items that are not model instances -------------------------------------------------------

FIXED = {"value": False}


@pytest.fixture
def value_pipeline(isolated_registry):
    @pipeline("test.values")
    class Values(Pipe):
        def process(self):
            if not FIXED["value"] and self.item["n"] < 0:
                raise ValueError(f"negative: {self.item['n']}")
            return super().process()

    FIXED["value"] = False
    yield "test.values"
    FIXED["value"] = False


def test_non_model_items_come_back_from_their_stored_value(value_pipeline):
    get_session().run([{"n": 1}, {"n": -1}, {"n": -2}], value_pipeline)
    assert sorted(row["n"] for row in open_rows().values_list("item_value", flat=True)) == [-2, -1]
    FIXED["value"] = True

    result = datapipe.reprocess(open_rows())

    assert (result.rows, result.resolved) == (2, 2)
    assert result.pipelines[value_pipeline].reports[0].processed == 2


def test_a_row_whose_value_could_not_be_stored_is_reported_missing(value_pipeline):
    get_session().run([{"n": -1}], value_pipeline)
    open_rows().update(item_value=None)

    result = datapipe.reprocess(open_rows())

    assert (result.rows, result.missing) == (0, 1)
    assert open_rows().get().item_missing


# Celery --------------------------------------------------------------------------------------


def test_reprocessing_in_celery_resolves_rows_when_the_chunks_succeed(celery_worker):
    items = failed_items("error", "error", "error")
    fix(items[:2])

    result = datapipe.reprocess(open_rows(), in_celery=True, queue=celery_worker.queue)

    assert result.in_celery and len(result.handles) == 1
    assert result.pipelines["flow"].rows == 3
    result.handles[0].wait(timeout=60)
    assert list(open_rows().values_list("item_id", flat=True)) == [str(items[2].pk)]
    assert open_rows().get().attempts == 2
