"""Unhandled exceptions become PipelineError rows: identity, stack, grouping, survival."""

import subprocess

import pytest
from django.contrib.contenttypes.models import ContentType
from django.test import override_settings
from django.views.decorators.debug import sensitive_variables

from datapipe import Pipe, PipeError, get_session, pipeline
from datapipe.models import PipelineError
from tests.testapp.models import SourceItem

pytestmark = pytest.mark.django_db


def make_items(*behaviours):
    return SourceItem.objects.bulk_create([SourceItem(behaviour=b) for b in behaviours])


def test_an_error_row_names_the_item_the_exception_and_the_stack(session):
    (item,) = make_items("error")
    session.run(SourceItem.objects.all(), "flow")
    row = PipelineError.objects.get()
    assert row.pipeline_name == "flow"
    assert row.item_content_type == ContentType.objects.get_for_model(SourceItem)
    assert row.item_id == str(item.pk)
    assert row.item_value is None
    assert row.item_repr == repr(item)
    assert row.error_type == "ValueError"
    assert row.error_message == f"bad item {item.pk}"
    assert row.error_args == [f"bad item {item.pk}"]
    last = row.frames[-1]
    assert last["file"] == "tests/testapp/pipes.py"
    assert last["function"] == "process"
    assert "raise ValueError" in last["code"]
    assert (row.attempts, row.resolved, row.resolved_at) == (1, False, None)
    assert row.first_seen == row.last_seen
    assert row.run_id is not None
    assert "ValueError" in row.traceback_html and "<html" in row.traceback_html


def test_the_same_failure_on_two_items_shares_a_signature(session):
    make_items("error", "error", "query_error")
    session.run(SourceItem.objects.all(), "flow")
    signatures = list(PipelineError.objects.order_by("pk").values_list("signature", flat=True))
    assert signatures[0] == signatures[1] != signatures[2]


def test_an_item_failing_again_updates_its_open_row(session):
    make_items("error")
    session.run(SourceItem.objects.all(), "flow")
    first = PipelineError.objects.get()
    SourceItem.objects.update(behaviour="query_error")
    session.run(SourceItem.objects.all(), "flow")
    row = PipelineError.objects.get()
    assert row.pk == first.pk
    assert row.attempts == 2
    assert row.last_seen > first.last_seen
    assert row.signature != first.signature  # the latest failure is described


def test_a_resolved_row_is_not_reopened(session):
    make_items("error")
    session.run(SourceItem.objects.all(), "flow")
    PipelineError.objects.update(resolved=True)
    session.run(SourceItem.objects.all(), "flow")
    assert PipelineError.objects.filter(resolved=False).count() == 1
    assert PipelineError.objects.count() == 2


def test_non_model_items_keep_their_json_value(session):
    session.run([{"n": -1}, {"n": 2}, {"n": -1}], "values")
    row = PipelineError.objects.get()
    assert row.item_value == {"n": -1}
    assert row.item_id is None and row.item_content_type is None
    assert row.attempts == 2  # the same value twice is the same item


@pytest.mark.django_db(transaction=True)
def test_error_rows_survive_the_rollback_of_their_run():
    make_items("error", "pipe_error")
    with pytest.raises(PipeError):
        get_session().run(SourceItem.objects.all(), "flow")
    assert PipelineError.objects.filter(error_type="ValueError").count() == 1


@pytest.mark.django_db(transaction=True)
def test_debug_errors_are_recorded_before_being_raised():
    make_items("error")
    with pytest.raises(ValueError):
        get_session(debug=True).run(SourceItem.objects.all(), "flow")
    assert PipelineError.objects.count() == 1


def test_the_code_revision_is_recorded(session):
    from datapipe.errors.capture import _git_revision

    _git_revision.cache_clear()  # read once per process: HEAD may have moved since
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode != 0:
        pytest.skip("not a git checkout: no revision to record")
    make_items("error")
    session.run(SourceItem.objects.all(), "flow")
    assert PipelineError.objects.get().revision == head.stdout.strip()


@override_settings(DATAPIPE={"REVISION": "release-42"})
def test_the_revision_setting_wins(session):
    make_items("error")
    session.run(SourceItem.objects.all(), "flow")
    assert PipelineError.objects.get().revision == "release-42"


def test_rendered_page_escapes_and_cleanses_secrets(session, isolated_registry):
    @pipeline("test.secret")
    class Secret(Pipe):
        @sensitive_variables("password")
        def process(self):
            password = self.context.secret  # noqa: F841
            raise ValueError("<script>alert(1)</script>")

    secret = "hunter2" + "-secret"  # not spelled whole: the page shows source lines
    get_session(context={"secret": secret}).run([1], "test.secret")
    page = PipelineError.objects.get().traceback_html
    assert secret not in page
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


@override_settings(DATAPIPE={"TRACEBACK_PAGES_PER_SIGNATURE": 2})
def test_pages_are_rendered_for_the_first_failures_of_a_signature(session):
    make_items(*["error"] * 4)
    session.run(SourceItem.objects.all(), "flow")
    pages = list(PipelineError.objects.order_by("pk").values_list("traceback_html", flat=True))
    assert [bool(p) for p in pages] == [True, True, False, False]


def test_item_failed_is_sent_for_each_failure(session):
    from datapipe.signals import item_failed

    seen = []

    def receiver(sender, item, exception, run, **kwargs):
        seen.append((item.behaviour, type(exception).__name__, run.pk))

    item_failed.connect(receiver)
    try:
        make_items("error", "ok", "query_error")
        report = session.run(SourceItem.objects.all(), "flow")
    finally:
        item_failed.disconnect(receiver)
    run_id = report.run_id
    assert seen == [("error", "ValueError", run_id), ("query_error", "ValueError", run_id)]
