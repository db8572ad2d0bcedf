"""Runs given no items (``source()``), ``select="new"/"failed"`` and dry runs."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

import tests.distributed_pipes  # noqa: F401  (registers the dist.* pipelines)
from datapipe import InvalidItems, Pipe, get_session, pipeline
from datapipe.models import PipelineError, PipelineRun, PipelineTrack
from tests.testapp.models import Derived, Note, ResultItem, SourceItem


def make_items(*behaviours):
    return [SourceItem.objects.create(behaviour=b, number=n)
            for n, b in enumerate(behaviours, start=1)]


# source() ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_run_given_only_a_name_processes_the_pipelines_source(isolated_registry):
    make_items("ok", "ok", "skip")

    @pipeline("sourced")
    class Sourced(Pipe):
        def source(self):
            return SourceItem.objects.exclude(behaviour="skip")

        def process(self):
            self.add_to_save(ResultItem(source=self.item, number=self.item.number))
            return self.item

    report = get_session(progress=False).run("sourced")
    assert (report.pipeline, report.processed) == ("sourced", 2)
    assert sorted(ResultItem.objects.values_list("number", flat=True)) == [1, 2]


@pytest.mark.django_db
def test_a_run_given_no_items_without_a_source_names_the_hook_to_write(isolated_registry):
    @pipeline("sourceless")
    class Sourceless(Pipe):
        pass

    with pytest.raises(InvalidItems, match=r"Sourceless was given no items and has no "
                                           r"source\(\).*def source\(self\)"):
        get_session(progress=False).run("sourceless")
    assert not PipelineRun.objects.exists()


@pytest.mark.django_db
def test_a_source_returning_none_is_refused(isolated_registry):
    @pipeline("none.source")
    class NoneSource(Pipe):
        def source(self):
            pass

    with pytest.raises(InvalidItems, match=r"NoneSource.source\(\) returned None"):
        get_session(progress=False).run(name="none.source")


# select -----------------------------------------------------------------------------------


def test_select_new_and_failed_pick_items_by_their_trackers_and_open_errors(runner):
    done, failing, fresh = make_items("ok", "error", "ok")
    get_session(progress=False).run(SourceItem.objects.filter(pk__in=[done.pk, failing.pk]),
                                    "flow")
    assert PipelineError.objects.filter(resolved=False).count() == 1

    new = runner.run("flow", select="new")
    assert new.processed == 1  # fresh only: done is tracked, failing has an open row
    assert PipelineTrack.objects.filter(pipeline_name="flow", item_id=str(fresh.pk)).exists()

    SourceItem.objects.filter(pk=failing.pk).update(behaviour="ok")  # the bug is fixed
    failed = runner.run("flow", select="failed")
    assert (failed.processed, failed.succeeded) == (1, 1)
    assert not PipelineError.objects.filter(resolved=False).exists()
    assert runner.run("flow", select="new").processed == 0


@pytest.mark.django_db
def test_select_on_a_queryset_is_one_query_not_one_per_item():
    make_items(*["ok"] * 30)
    get_session(progress=False).run(SourceItem.objects.all()[:10], "flow")
    from datapipe.selection import select_items

    with CaptureQueriesContext(connection) as queries:
        selected = list(select_items(SourceItem.objects.all(), "flow", "new", "default"))
    assert len(selected) == 20
    assert len([q for q in queries if "datapipe_pipelinetrack" in q["sql"]]) == 1


@pytest.mark.django_db
def test_select_on_values_uses_their_error_rows(isolated_registry):
    @pipeline("values.select")
    class Values(Pipe):
        def process(self):
            if self.item["n"] == 2 and not self.context.get("fixed"):
                raise ValueError("two")
            return self.item

    items = [{"n": 1}, {"n": 2}, {"n": 3}]
    get_session(progress=False).run(items, "values.select")
    report = get_session(progress=False, context={"fixed": True}).run(
        items, "values.select", select="failed")
    assert (report.processed, report.succeeded) == (1, 1)


@pytest.mark.parametrize("select", ["newest", None, 1])
def test_an_unknown_select_is_refused_naming_the_accepted_values(select):
    with pytest.raises(ValueError, match=r"select must be one of 'all', 'new', 'failed', not "):
        get_session(progress=False).run([1], "flow", select=select)


# dry_run ----------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_dry_run_reports_its_changes_and_leaves_nothing_behind():
    items = make_items("ok", "note", "error")
    session = get_session(progress=False)
    session.run(SourceItem.objects.all(), "flow")  # 2 results, 1 note, 2 derived by trigger
    before = {model: set(model.objects.values_list("pk", flat=True))
              for model in (ResultItem, Note, Derived, PipelineTrack, PipelineRun)}
    errors_before = list(PipelineError.objects.values_list("pk", "attempts"))

    report = session.run(SourceItem.objects.all(), "flow", dry_run=True)

    assert (report.processed, report.succeeded, report.errored) == (3, 2, 1)
    # Reparse replaces 2 results (and the note, by cascade); the trigger replaces 2 derived.
    assert report.changes["testapp.ResultItem"] == {"created": 2, "deleted": 2}
    assert report.changes["testapp.note"] == {"created": 1, "deleted": 1}  # lower case too
    assert report.changes["testapp.Derived"] == {"created": 2, "deleted": 2}
    assert report.triggered[0].processed == 2
    after = {model: set(model.objects.values_list("pk", flat=True)) for model in before}
    assert after == before
    assert list(PipelineError.objects.values_list("pk", "attempts")) == errors_before
    assert items[0].pk in set(ResultItem.objects.values_list("source_id", flat=True))


@pytest.mark.django_db(transaction=True)
def test_a_dry_run_does_not_call_finish_run(isolated_registry):
    called = []

    @pipeline("finishing")
    class Finishing(Pipe):
        def finish_run(self, run):
            called.append(run.pk)

    get_session(progress=False).run([1, 2], "finishing", dry_run=True)
    assert called == []
    get_session(progress=False).run([1, 2], "finishing")
    assert len(called) == 1


def test_a_dry_run_cannot_go_to_celery():
    with pytest.raises(TypeError, match=r"run_in_celery\(\) does not take dry_run"):
        get_session(progress=False).run_in_celery([1], "flow", dry_run=True)


def test_dry_run_takes_a_boolean_only():
    with pytest.raises(TypeError, match=r"dry_run must be True or False, not 'yes'"):
        get_session(progress=False).run([1], "flow", dry_run="yes")
