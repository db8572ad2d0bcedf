"""Hostile arguments are refused before anything is written or sent (DESIGN.md section
11): options that do not exist, flags that are not booleans, items and contexts that would
not come back equal from Celery; and a pipeline named by an instance method is found.
"""

import pytest

from datapipe import InvalidItems, ItemNotSerializable, get_session, reprocess
from datapipe.models import PipelineChunk, PipelineError, PipelineRun
from tests.testapp.models import UUIDItem

pytestmark = pytest.mark.django_db

SURROGATE = b"caf\xe9".decode("utf-8", "surrogateescape")  # "caf\udce9"


# Options that do not exist, flags that are not booleans -----------------------------------


def test_get_session_refuses_an_unknown_option_naming_the_accepted_ones():
    with pytest.raises(TypeError, match=r"^get_session\(\) got unknown keyword unknown; accepted: "
                       r"atomic, chunksize, concurrency, context, debug, keep_results, "
                       r"max_error_rate, max_errors, progress, retry, using$"):
        get_session(unknown=1)


@pytest.mark.parametrize("flag", ["debug", "atomic", "progress", "keep_results"])
def test_flags_take_booleans_only(flag):
    with pytest.raises(TypeError, match=f"^{flag} must be True or False, not 'false'$"):
        get_session(**{flag: "false"})


def test_reprocess_takes_a_boolean_for_in_celery():
    with pytest.raises(TypeError, match="^in_celery must be True or False, not 'false'$"):
        reprocess(PipelineError.objects.all(), in_celery="false")


def test_run_refuses_an_unknown_keyword(session):
    with pytest.raises(TypeError, match=r"^run\(\) got unknown keyword itmes; accepted: items, "):
        session.run(name="values", itmes=[{"n": 1}])


def test_run_in_celery_refuses_an_unknown_task_option_before_anything_is_written(session):
    with pytest.raises(TypeError, match=r"^run_in_celery\(\) got unknown keyword "
                       r"celery_chunk_size; accepted: celery_chunksize, compression, countdown, "
                       r"exchange, expires, headers, priority, queue, retry, retry_policy, "
                       r"routing_key, soft_time_limit, time_limit$"):
        session.run_in_celery([{"n": 1}], "values", celery_chunk_size=2)
    with pytest.raises(TypeError, match="^queue must be a queue name, not 5$"):
        session.run_in_celery([{"n": 1}], "values", queue=5)
    assert not PipelineRun.objects.exists()


def test_run_in_celery_keeps_the_task_options_it_accepts(session):
    # Inside the test's transaction nothing is sent: the run and its chunks are written.
    handle = session.run_in_celery([{"n": 1}], "values", priority=5, countdown=1)
    assert PipelineRun.objects.get(pk=handle.id).dispatch["task_options"] == {
        "priority": 5, "countdown": 1}


# Items sent to Celery come back equal, or are refused ------------------------------------


@pytest.mark.parametrize("value, problem", [
    (float("nan"), "nan (NaN and Infinity are not JSON)"),
    (float("inf"), "inf (NaN and Infinity are not JSON)"),
    ({"a": [float("-inf")]}, "-inf (NaN and Infinity are not JSON)"),
    ((1, 2), "a tuple (it would come back as a list)"),
    ({"a": (1,)}, "a tuple (it would come back as a list)"),
    ({1: "a"}, "a dict key that is not a string (int 1)"),
    ("a\x00b", "a NUL character in a string"),
    ({"k\x00": 1}, "a NUL character in a string"),
    ([SURROGATE], "a lone surrogate in a string"),
], ids=["nan", "inf", "nested -inf", "tuple", "nested tuple", "int key", "nul", "nul key",
        "surrogate"])
def test_items_that_would_not_come_back_equal_are_refused_before_anything_is_written(
        session, value, problem):
    with pytest.raises(ItemNotSerializable) as raised:
        session.run_in_celery([{"n": 1}] * 3 + [value], "values", celery_chunksize=2)
    assert str(raised.value).startswith("Item 3 (")
    assert f"it holds {problem}" in str(raised.value)
    assert not PipelineRun.objects.exists() and not PipelineChunk.objects.exists()


def test_a_context_that_would_not_come_back_equal_is_refused():
    with pytest.raises(TypeError, match="context must be JSON-encodable .* holds nan"):
        get_session(context={"ratio": float("nan")}).run_in_celery([{"n": 1}], "values")
    assert not PipelineRun.objects.exists()


# A pipeline named by an instance method -----------------------------------------------------


@pytest.mark.parametrize("as_queryset", [True, False], ids=["queryset", "list"])
def test_a_model_naming_its_pipeline_with_an_instance_method(monkeypatch, as_queryset):
    monkeypatch.setattr(UUIDItem, "get_default_pipe_name", lambda self: "uuid", raising=False)
    UUIDItem.objects.create(number=1)
    items = UUIDItem.objects.all() if as_queryset else list(UUIDItem.objects.all())
    report = get_session().run(items)
    assert (report.pipeline, report.processed, report.succeeded) == ("uuid", 1, 1)


def test_an_empty_queryset_cannot_ask_an_instance_for_its_pipeline(monkeypatch):
    monkeypatch.setattr(UUIDItem, "get_default_pipe_name", lambda self: "uuid", raising=False)
    with pytest.raises(InvalidItems, match="empty QuerySet"):
        get_session().run(UUIDItem.objects.all())
