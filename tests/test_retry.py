"""``Pipe.retry`` and the error thresholds, locally and through Celery (one contract).

Items failing with a transient exception are tried again later while the others go
on; only the last failure writes an error row. ``max_errors`` / ``max_error_rate`` stop
a run that fails too much, as ``PipeError`` does.
"""

from collections import Counter

import pytest

import tests.distributed_pipes  # noqa: F401  (registers the dist.* pipelines)
from datapipe import ErrorThresholdExceeded, Pipe, Retry, get_session, pipeline
from datapipe.models import PipelineError, PipelineRun
from tests.distributed_pipes import TRIES
from tests.testapp.models import ResultItem, SourceItem


@pytest.fixture(autouse=True)
def fresh_tries():
    TRIES.clear()


def make_items(*behaviours):
    return [SourceItem.objects.create(behaviour=b, number=n)
            for n, b in enumerate(behaviours, start=1)]


def kept_outputs():
    """``{source pk: [the try number of each kept output]}``."""
    kept: dict = {}
    for source, number in ResultItem.objects.values_list("source_id", "number"):
        kept.setdefault(source, []).append(int(number))
    return kept


# Retry ------------------------------------------------------------------------------------


def test_an_item_that_heals_on_its_third_try_leaves_no_error_row(runner):
    ok, flaky = make_items("ok", "fails:2")
    run = runner.run("dist.flaky")
    assert (run.processed, run.succeeded, run.errored, run.retried) == (2, 2, 0, 2)
    assert not PipelineError.objects.exists()
    # Each try ran in its own savepoint: the two failed tries' outputs are gone.
    assert kept_outputs() == {ok.pk: [1], flaky.pk: [3]}


def test_an_item_that_never_heals_has_one_error_row_counting_every_try(runner):
    ok, never = make_items("ok", "fails:99")
    run = runner.run("dist.flaky")
    assert (run.processed, run.succeeded, run.errored, run.retried) == (2, 1, 1, 2)
    error = PipelineError.objects.get()
    assert (error.item_id, error.attempts, error.error_type) == (str(never.pk), 3, "TimeoutError")
    assert kept_outputs() == {ok.pk: [1]}


def test_an_exception_not_named_in_retry_on_fails_at_once(runner):
    make_items("bug")
    run = runner.run("dist.flaky")
    assert (run.errored, run.retried) == (1, 0)
    assert PipelineError.objects.get().attempts == 1


@pytest.mark.django_db
def test_other_items_go_on_while_a_failed_one_waits_for_its_retry(isolated_registry):
    order = []

    @pipeline("waits")
    class Waits(Pipe):
        retry = Retry(on=TimeoutError, attempts=2, backoff=0.3)

        def process(self):
            item = super().process()
            order.append(item)
            if item == "slow" and order.count("slow") == 1:
                raise TimeoutError
            return item

    report = get_session(progress=False).run(["slow", "a", "b", "c"], "waits")
    assert order == ["slow", "a", "b", "c", "slow"]
    assert (report.succeeded, report.retried, report.errored) == (4, 1, 0)


@pytest.mark.django_db
def test_a_session_retry_overrides_the_pipes(isolated_registry):
    tries = Counter()

    @pipeline("overridden")
    class Overridden(Pipe):
        retry = Retry(on=TimeoutError, attempts=5, backoff=0)

        def process(self):
            tries[self.item] += 1
            raise TimeoutError

    get_session(progress=False, retry=Retry(on=TimeoutError, attempts=2, backoff=0)).run(
        ["x"], "overridden")
    assert tries == {"x": 2}
    assert PipelineError.objects.get().attempts == 2


@pytest.mark.django_db
def test_many_items_waiting_for_retries_are_all_retried_and_counted(isolated_registry):
    """100 of 1,000 items fail twice: 200 retries, no error row. (How long it takes is
    measured by ``python -m benchmarks.retry``, not asserted here.)"""
    tries = Counter()

    @pipeline("many.retries")
    class ManyRetries(Pipe):
        retry = Retry(on=TimeoutError, attempts=3, backoff=0.01)

        def process(self):
            tries[self.item] += 1
            if self.item % 10 == 0 and tries[self.item] <= 2:
                raise TimeoutError
            return self.item

    report = get_session(progress=False).run(list(range(1000)), "many.retries")
    assert (report.processed, report.succeeded, report.retried, report.errored) == (
        1000, 1000, 200, 0)
    assert Counter(tries.values()) == {1: 900, 3: 100}
    assert not PipelineError.objects.exists()


@pytest.mark.django_db
def test_a_break_while_items_wait_for_a_retry_collects_them_with_their_last_failure(
        isolated_registry):
    @pipeline("break.waiting")
    class BreakWaiting(Pipe):
        retry = Retry(on=TimeoutError, attempts=3, backoff=30)

        def process(self):
            if self.item == "t":
                raise TimeoutError("later")
            if self.item == "stop":
                self.break_()
            return self.item

    report = get_session(progress=False).run(["t", "ok", "stop", "never"], "break.waiting")
    assert (report.processed, report.succeeded, report.errored, report.broke) == (3, 1, 1, True)
    error = PipelineError.objects.get()
    assert (error.item_value, error.attempts, error.error_message) == ("t", 1, "later")


@pytest.mark.parametrize("arguments, message", [
    ({"attempts": 0}, r"Retry\(attempts=...\) must be an integer of 1 or more.*not 0"),
    ({"backoff": -1}, r"Retry\(backoff=...\) must be a number of seconds >= 0, not -1"),
    ({"max_delay": float("nan")}, r"Retry\(max_delay=...\) must be a number of seconds"),
    ({"on": "TimeoutError"}, r"Retry\(on=...\) takes an exception class"),
])
def test_a_bad_retry_is_refused_naming_the_value(arguments, message):
    with pytest.raises((TypeError, ValueError), match=message):
        Retry(**arguments)


@pytest.mark.django_db
def test_a_retry_attribute_that_is_not_a_retry_is_refused_at_run_time(isolated_registry):
    @pipeline("bad.retry")
    class BadRetry(Pipe):
        retry = 3

    with pytest.raises(TypeError, match=r"BadRetry: retry must be a datapipe.Retry\(...\), not 3"):
        get_session(progress=False).run([1], "bad.retry")


# Error thresholds -------------------------------------------------------------------------


def test_the_error_after_max_errors_stops_and_fails_the_run_keeping_error_rows(runner):
    make_items("ok", "error", "error", "error", "ok")
    if runner.backend == "local":
        with pytest.raises(ErrorThresholdExceeded,
                           match=r"^error threshold exceeded: 3 of 4 items failed$"):
            runner.run("dist.fragile")
        run = PipelineRun.objects.get(pipeline_name="dist.fragile")
        assert not ResultItem.objects.exists()  # an atomic run: rolled back
    else:
        # Celery: judged over the chunks finished before each chunk (a chunk that meets
        # the third error is rolled back and fails), and over the whole run at its end.
        run = runner.run("dist.fragile")
        assert "error threshold exceeded: 3 of" in run.message
    assert run.status == "failed"
    assert PipelineError.objects.count() == 3


@pytest.mark.django_db
def test_max_error_rate_is_judged_from_100_items_on_and_at_the_end(isolated_registry):
    @pipeline("rate")
    class Rate(Pipe):
        max_error_rate = 0.05

        def process(self):
            if self.item < 0:
                raise ValueError(self.item)
            return self.item

    session = get_session(progress=False)
    # 3 errors in the first 10 items: 30%, but judged from 100 items on: 3 of 200 pass.
    assert session.run([-1, -2, -3, *range(197)], "rate").errored == 3
    with pytest.raises(ErrorThresholdExceeded, match=r"^error threshold exceeded: 6 of 100"):
        session.run([-1, -2, -3, -4, -5, -6, *range(200)], "rate")
    # A short run is judged at its end.
    with pytest.raises(ErrorThresholdExceeded, match=r"^error threshold exceeded: 1 of 10 "):
        session.run([-1, *range(9)], "rate")
    assert PipelineRun.objects.filter(status="failed").count() == 2
    assert PipelineRun.objects.filter(status="failed").first().message.startswith(
        "error threshold exceeded: ")


@pytest.mark.django_db
def test_session_thresholds_override_the_pipes(isolated_registry):
    @pipeline("lenient")
    class Lenient(Pipe):
        def process(self):
            raise ValueError

    assert get_session(progress=False).run([1, 2, 3], "lenient").errored == 3
    with pytest.raises(ErrorThresholdExceeded, match=r"1 of 1 items failed"):
        get_session(progress=False, max_errors=0).run([1, 2, 3], "lenient")


@pytest.mark.parametrize("options, message", [
    ({"max_error_rate": 2}, r"max_error_rate must be a fraction between 0 and 1 .*not 2"),
    ({"max_errors": -1}, r"max_errors must be an integer >= 0 \(or None\), not -1"),
    ({"retry": "3 times"}, r"retry must be a datapipe.Retry\(...\), not '3 times'"),
])
def test_bad_threshold_options_are_refused_naming_the_value(options, message):
    with pytest.raises((TypeError, ValueError), match=message):
        get_session(**options)


@pytest.mark.django_db
@pytest.mark.parametrize("concurrency", [1, 4])
def test_a_fetch_that_times_out_is_fetched_again_on_the_retry(isolated_registry, concurrency):
    fetches = Counter()

    @pipeline("fetch.retried")
    class FetchRetried(Pipe):
        retry = Retry(on=TimeoutError, attempts=2, backoff=0)

        async def fetch(self):
            fetches[self.item] += 1
            if self.item == "slow" and fetches[self.item] == 1:
                raise TimeoutError("the first fetch timed out")
            self.body = f"body of {self.item}"

        def process(self):
            return self.body

    report = get_session(progress=False, keep_results=True, concurrency=concurrency).run(
        ["a", "slow", "b"], "fetch.retried")
    assert (report.succeeded, report.retried, report.errored) == (3, 1, 0)
    assert sorted(report.results) == ["body of a", "body of b", "body of slow"]
    assert fetches == {"a": 1, "slow": 2, "b": 1}
