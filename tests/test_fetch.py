"""``fetch()``: each item's I/O, run for up to ``concurrency`` items at once.

The pipes here record what their fetches do in :data:`PROBE` (in flight, the order they
end in, the threads they ran on); barriers and events make the interleaving, never
timing. Each test runs the plain (thread pool) and the async (event loop) kind.
"""

from __future__ import annotations

import asyncio
import threading
import tracemalloc
import warnings

import pytest

from datapipe import (
    Pipe,
    PipeBreak,
    PipeContinue,
    PipeError,
    PipeIgnore,
    get_session,
    pipeline,
)
from datapipe.concurrency import WINDOW
from datapipe.exceptions import PipelineDefinitionError
from datapipe.models import PipelineError, PipelineRun
from tests.testapp.models import ResultItem, SourceItem

pytestmark = pytest.mark.django_db

WAIT = 30  # seconds a barrier or event waits before the test fails rather than hangs


class Probe:
    """What the fetches of one test did. ``together``: fetches wait for that many of
    them to be in flight at once; ``reverse``: in each group of ``together`` items, an
    item's fetch ends only after the next item's has."""

    def __init__(self, together: int = 1, reverse: bool = False, order=()):
        self.lock = threading.Lock()
        self.in_flight = self.most = 0
        self.ended: list = []  # items (pk or value) in the order their fetch ended
        self.processed: list = []
        self.threads: set[str] = set()
        self.together = together
        self.reverse = reverse
        self.index = {pk: i for i, pk in enumerate(order)}
        self.thread_barrier = threading.Barrier(together, timeout=WAIT)
        self.thread_events = {pk: threading.Event() for pk in order}
        self.async_barrier = self.async_events = None  # made on the fetch loop

    def entered(self) -> None:
        with self.lock:
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
            self.threads.add(threading.current_thread().name)

    def left(self, key) -> None:
        with self.lock:
            self.in_flight -= 1
            self.ended.append(key)

    def successor(self, pk):
        """The next item of ``pk``'s group, whose fetch ends before its own (reverse)."""
        i = self.index.get(pk)
        if not self.reverse or i is None or (i + 1) // self.together != i // self.together:
            return None
        order = list(self.index)
        return order[i + 1] if i + 1 < len(order) else None

    def meet_sync(self, pk) -> None:
        self.thread_barrier.wait()
        later = self.successor(pk)
        if later is not None:
            assert self.thread_events[later].wait(WAIT), "the next item's fetch never ended"

    def done_sync(self, pk) -> None:
        if pk in self.thread_events:
            self.thread_events[pk].set()

    async def meet_async(self, pk) -> None:
        if self.async_barrier is None:
            self.async_barrier = asyncio.Barrier(self.together)
            self.async_events = {key: asyncio.Event() for key in self.index}
        await asyncio.wait_for(self.async_barrier.wait(), WAIT)
        later = self.successor(pk)
        if later is not None:
            await asyncio.wait_for(self.async_events[later].wait(), WAIT)

    def done_async(self, pk) -> None:
        if self.async_events and pk in self.async_events:
            self.async_events[pk].set()


PROBE = Probe()


def act(pipe) -> None:
    """What ``item.behaviour`` tells a fetch to do."""
    behaviour = pipe.item.behaviour
    if behaviour == "fetch_ignore":
        raise PipeIgnore("fetch said so")
    if behaviour == "fetch_continue":
        raise PipeContinue(f"continued {pipe.item.pk}")
    if behaviour == "fetch_break":
        raise PipeBreak()
    if behaviour == "fetch_pipe_error":
        raise PipeError("fetch stops everything")
    if behaviour == "fetch_error":
        raise ValueError(f"fetch failed on {pipe.item.pk}")
    if behaviour == "fetch_query":
        SourceItem.objects.count()
    if behaviour == "fetch_save":
        pipe.add_to_save(ResultItem(number=-1))
    pipe.fetched = pipe.item.number * 10


class Outputs(Pipe):
    """One ResultItem per item, numbered by what its fetch got."""

    def process(self):
        item = super().process()
        PROBE.processed.append(item.pk)
        self.add_to_save(ResultItem(source=item, number=self.fetched))
        return item

    def finish(self, results):
        PROBE.finished = True
        super().finish(results)


class SyncFetch(Outputs):
    def fetch(self):
        PROBE.entered()
        try:
            PROBE.meet_sync(self.item.pk)
            act(self)
        finally:
            PROBE.left(self.item.pk)
            PROBE.done_sync(self.item.pk)
        return super().fetch()


class AsyncFetch(Outputs):
    async def fetch(self):
        PROBE.entered()
        try:
            await PROBE.meet_async(self.item.pk)
            act(self)
        finally:
            PROBE.left(self.item.pk)
            PROBE.done_async(self.item.pk)
        await super().fetch()


KINDS = {"sync": SyncFetch, "async": AsyncFetch}


@pytest.fixture(params=["sync", "async"])
def kind(request, isolated_registry):
    """The name of a fetching pipeline of either kind, registered for the test."""
    pipeline(f"fetch.{request.param}")(KINDS[request.param])
    return f"fetch.{request.param}"


@pytest.fixture
def probe():
    """Installs a fresh :data:`PROBE`; ``probe(...)`` replaces it with other options."""
    global PROBE

    def install(*args, **kwargs) -> Probe:
        global PROBE
        PROBE = Probe(*args, **kwargs)
        return PROBE

    PROBE = Probe()
    yield install
    PROBE = Probe()


def make_items(*behaviours, number=1):
    return SourceItem.objects.bulk_create([SourceItem(number=number, behaviour=b)
                                           for b in behaviours])


def run(name, concurrency=None, items=None, **options):
    items = SourceItem.objects.all() if items is None else items
    return get_session(progress=False, concurrency=concurrency, **options).run(items, name)


def error_row(item) -> PipelineError:
    return PipelineError.objects.get(item_id=str(item.pk))


# Concurrency and order ------------------------------------------------------------------


@pytest.mark.parametrize("concurrency", [1, 4, 10])
def test_fetch_runs_for_up_to_concurrency_items_at_once(kind, probe, concurrency):
    items = make_items(*["ok"] * (3 * concurrency))
    probe(together=concurrency)  # each fetch waits until `concurrency` are in flight

    report = run(kind, concurrency)

    assert (report.processed, report.succeeded, report.errored) == (len(items),) * 2 + (0,)
    assert PROBE.most == concurrency


def test_the_pipe_attribute_sets_the_concurrency_and_the_session_overrides_it(
        isolated_registry, probe):
    @pipeline("fetch.attribute")
    class Attribute(AsyncFetch):
        concurrency = 3

    make_items(*["ok"] * 6)
    probe(together=3)
    assert run("fetch.attribute").succeeded == 6
    assert PROBE.most == 3
    make_items(*["ok"] * 4)
    probe(together=2)
    assert run("fetch.attribute", concurrency=2).succeeded == 10
    assert PROBE.most == 2


def test_items_are_processed_and_saved_in_order_whatever_order_their_fetches_end(kind, probe):
    items = make_items(*["ok"] * 12)
    pks = [item.pk for item in items]
    probe(together=4, reverse=True, order=pks)

    run(kind, 4)

    assert PROBE.ended[:4] == pks[:4][::-1]  # the fetches ended in reverse, group by group
    assert PROBE.processed == pks
    saved = list(ResultItem.objects.order_by("pk").values_list("source_id", "number"))
    assert saved == [(pk, 10) for pk in pks]


def test_a_plain_fetch_at_concurrency_one_runs_in_the_callers_thread_and_others_do_not(
        kind, probe):
    make_items("ok", "ok")
    run(kind, 1)
    alone = set(PROBE.threads)
    probe()
    run(kind, 2)
    if kind == "fetch.sync":
        assert alone == {threading.current_thread().name}
        assert all(name.startswith("datapipe-fetch") for name in PROBE.threads)
    else:  # one loop, in this thread, which runs none of its own
        assert alone == PROBE.threads == {threading.current_thread().name}


def test_a_pipeline_without_fetch_starts_no_thread_and_no_loop(isolated_registry):
    seen = []

    @pipeline("fetch.none")
    class NoFetch(Pipe):
        concurrency = 50

        def process(self):
            seen.append((threading.current_thread().name, _running_loop()))
            return super().process()

    threads = threading.active_count()
    assert run("fetch.none", items=[1, 2]).succeeded == 2
    assert seen == [(threading.current_thread().name, None)] * 2
    assert threading.active_count() == threads


def _running_loop():
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


# The flow-control table, raised in fetch ---------------------------------------------------


@pytest.mark.parametrize("concurrency", [1, 3])
def test_flow_control_raised_in_fetch_counts_for_its_item_as_in_process(kind, probe,
                                                                        concurrency):
    items = make_items("ok", "fetch_continue", "fetch_ignore", "fetch_error", "ok",
                       "fetch_break", "ok", "ok")
    by_pk = {item.pk: item for item in items}

    report = run(kind, concurrency, keep_results=True)

    assert (report.processed, report.succeeded, report.continued, report.ignored,
            report.errored, report.broke) == (6, 2, 1, 1, 1, True)
    # process() ran for the items whose fetch went through, before the break only.
    assert [by_pk[pk].behaviour for pk in PROBE.processed] == ["ok", "ok"]
    assert sorted(ResultItem.objects.values_list("source_id", flat=True)) == [
        items[0].pk, items[4].pk]
    assert f"continued {items[1].pk}" in report.results
    assert PROBE.finished  # finish runs after a break
    assert error_row(items[3]).error_type == "ValueError"
    assert PipelineRun.objects.get(pk=report.run_id).status == "done"


def test_pipe_error_raised_in_fetch_rolls_the_run_back_and_reaches_the_caller(kind, probe):
    make_items("ok", "ok", "fetch_pipe_error", "ok")
    with pytest.raises(PipeError, match="fetch stops everything"):
        run(kind, 2)
    assert not ResultItem.objects.exists()
    assert PipelineRun.objects.get(pipeline_name=kind).status == "failed"


def test_in_debug_an_exception_in_fetch_rolls_the_run_back_and_is_raised(kind, probe):
    make_items("ok", "fetch_error", "ok")
    with pytest.raises(ValueError, match="fetch failed"):
        run(kind, 2, debug=True)
    assert not ResultItem.objects.exists()


def test_exceptions_in_fetch_are_collected_with_the_frames_of_the_hook(kind, probe):
    items = make_items("fetch_error", "ok", "fetch_error")

    report = run(kind, 2)

    assert (report.succeeded, report.errored) == (1, 2)
    first, second = error_row(items[0]), error_row(items[2])
    assert first.error_message == f"fetch failed on {items[0].pk}"
    functions = [(frame["file"], frame["function"]) for frame in first.frames]
    assert ("tests/test_fetch.py", "fetch") in functions
    assert first.frames[-1]["function"] == "act"
    assert "raise ValueError" in first.frames[-1]["code"]
    assert first.signature == second.signature  # one group for one failure
    assert "fetch failed" in first.traceback_html


# Bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize("value, error", [
    (0, ValueError), (-3, ValueError), (1.5, TypeError), (True, TypeError), ("4", TypeError),
])
def test_a_session_refuses_a_concurrency_that_is_not_a_positive_integer(value, error):
    with pytest.raises(error, match="concurrency must be a positive integer"):
        get_session(concurrency=value)


@pytest.mark.parametrize("value, error", [(0, ValueError), (2.0, TypeError)])
def test_a_pipe_whose_concurrency_is_not_a_positive_integer_fails_its_run_naming_it(
        isolated_registry, value, error):
    @pipeline("fetch.bad_concurrency")
    class BadConcurrency(AsyncFetch):
        concurrency = value

    make_items("ok")
    with pytest.raises(error, match=r"BadConcurrency\.concurrency must be a positive integer"):
        run("fetch.bad_concurrency")
    assert PipelineRun.objects.get().status == "failed"


def test_a_pipeline_mixing_async_and_plain_fetch_is_refused_when_its_run_starts(
        isolated_registry, probe):
    class Plain(Pipe):
        def fetch(self):
            return super().fetch()

    @pipeline("fetch.mixed")
    class Mixed(Plain, AsyncFetch):
        pass

    make_items("ok")
    message = r"Mixed mixes async def fetch \(AsyncFetch\) and plain def fetch \(\S*Plain\)"
    with pytest.raises(PipelineDefinitionError, match=message):
        run("fetch.mixed")
    with pytest.raises(PipelineDefinitionError, match=message):
        Mixed.eval(SourceItem.objects.get())
    assert PipelineRun.objects.get().status == "failed"
    assert PROBE.ended == []


def test_a_plain_fetch_returning_a_coroutine_fails_its_items_saying_to_declare_it_async(
        isolated_registry, probe):
    async def download(pipe):
        pipe.fetched = 1

    @pipeline("fetch.forgot_async")
    class ForgotAsync(Outputs):
        def fetch(self):
            return download(self)

    items = make_items("ok", "ok")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no "never awaited" either
        report = run("fetch.forgot_async", 2)

    assert report.errored == 2
    row = error_row(items[0])
    assert row.error_type == "datapipe.exceptions.InvalidFetch"
    assert "ForgotAsync.fetch() returned coroutine" in row.error_message
    assert "async def fetch(self)" in row.error_message


@pytest.mark.parametrize("concurrency", [1, 3])
def test_a_fetch_that_queries_the_database_fails_its_item_naming_the_pipe(kind, probe,
                                                                          concurrency):
    items = make_items("ok", "fetch_query", "ok")

    report = run(kind, concurrency)

    assert (report.succeeded, report.errored) == (2, 1)
    row = error_row(items[1])
    assert row.error_type == "datapipe.exceptions.FetchUsedDatabase"
    pipe_name = KINDS[kind.removeprefix("fetch.")].__qualname__
    assert f"{pipe_name}.fetch() used the database" in row.error_message
    assert "fetch must not use the database" in row.error_message
    # Where the query was made, not only where the error was raised.
    assert ("tests/test_fetch.py", "act") in [(f["file"], f["function"]) for f in row.frames]
    assert sorted(ResultItem.objects.values_list("source_id", flat=True)) == [
        items[0].pk, items[2].pk]


def test_add_to_save_in_fetch_fails_its_item_saying_to_add_outputs_in_process(kind, probe):
    items = make_items("fetch_save", "ok")

    report = run(kind, 2)

    assert (report.succeeded, report.errored) == (1, 1)
    assert "add the outputs in process()" in error_row(items[0]).error_message
    assert list(ResultItem.objects.values_list("number", flat=True)) == [10]


# Memory ---------------------------------------------------------------------------------


class Doubled(Pipe):
    """For int items: returns what fetch got; untracked, results not kept."""

    track = False

    def process(self):
        super().process()
        return self.fetched


class Doubling(Doubled):
    def fetch(self):
        self.fetched = self.item * 2
        return super().fetch()


class AsyncDoubling(Doubled):
    async def fetch(self):
        self.fetched = self.item * 2
        await super().fetch()


class Counted:
    """An iterator over ``range(count)`` that knows how many items were read."""

    def __init__(self, count: int):
        self.numbers = iter(range(count))
        self.read = 0

    def __iter__(self):
        return self

    def __next__(self):
        number = next(self.numbers)
        self.read += 1
        return number


@pytest.fixture(params=["sync", "async"])
def doubling(request, isolated_registry):
    pipeline("fetch.doubling")(Doubling if request.param == "sync" else AsyncDoubling)
    return "fetch.doubling"


def test_no_more_than_the_window_of_items_is_read_ahead_of_the_one_processed(
        isolated_registry):
    ahead = []
    items = Counted(500)

    @pipeline("fetch.window")
    class Window(AsyncDoubling):
        def process(self):
            ahead.append(items.read - self.item)
            return super().process()

    assert run("fetch.window", 5, items=items).succeeded == 500
    assert max(ahead) == WINDOW * 5


def test_memory_stays_flat_in_the_number_of_items(doubling):
    def peak_for(count):
        tracemalloc.start()
        try:
            report = run(doubling, 8, items=Counted(count))
            assert report.succeeded == count
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    small, large = peak_for(10_000), peak_for(100_000)
    # Ten times the items: the peak stays within the window, not the number of items.
    assert large < small * 1.5


# Pipe.eval and a caller that runs an event loop -----------------------------------------


def test_eval_runs_fetch_then_process(kind, probe):
    (item,) = make_items("ok", number=4)
    assert KINDS[kind.removeprefix("fetch.")].eval(item) == item
    assert PROBE.ended == PROBE.processed == [item.pk]
    with pytest.raises(PipeIgnore):
        KINDS[kind.removeprefix("fetch.")].eval(make_items("fetch_ignore")[0])


def test_eval_inside_a_running_event_loop_runs_an_async_fetch_on_a_thread_of_its_own(probe):
    (item,) = make_items("ok")

    async def caller():
        return AsyncFetch.eval(item)

    assert asyncio.run(caller()) == item
    assert PROBE.threads == {"datapipe-fetch-loop"}


@pytest.mark.django_db(transaction=True)
def test_a_run_from_a_thread_running_an_event_loop_fetches_on_a_loop_of_its_own(
        isolated_registry, probe, monkeypatch):
    # The caller's own queries run under its loop: Django allows them only so.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    pipeline("fetch.async")(AsyncFetch)
    items = make_items("ok", "fetch_query", "ok", "ok")
    probe(together=1)

    async def caller():
        return run("fetch.async", 3)

    report = asyncio.run(caller())

    assert (report.succeeded, report.errored) == (3, 1)
    assert PROBE.threads == {"datapipe-fetch-loop"}
    assert "fetch must not use the database" in error_row(items[1]).error_message
    assert ResultItem.objects.count() == 3


# Through Celery -------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_fetch_runs_the_same_in_celery_chunks_with_the_sessions_concurrency(celery_worker):
    import tests.distributed_pipes  # noqa: F401  (registers dist.fetch, as the workers do)

    items = make_items("ok", "ok", "fetch_error", "ok", "ok", "fetch_ignore", "ok", "ok")
    session = get_session(progress=False, concurrency=4, context={"together": 4})

    handle = session.run_in_celery(SourceItem.objects.all(), "dist.fetch", celery_chunksize=4,
                                   queue=celery_worker.queue)
    run = handle.wait(timeout=60)

    assert (run.status, run.processed, run.succeeded, run.ignored, run.errored) == (
        "done", 8, 6, 1, 1)
    # Each chunk's fetches met at their barrier: 4 in flight (the pipe's own is 1).
    chunks = run.chunks.order_by("index")
    assert [chunk.context["most_in_flight"] for chunk in chunks] == [4, 4]
    kept = [item.pk for item in items if item.behaviour == "ok"]
    assert sorted(ResultItem.objects.values_list("source_id", "number")) == [
        (pk, 10) for pk in kept]
    row = error_row(items[2])
    assert row.error_message == f"fetch failed on {items[2].pk}"
    assert ("tests/distributed_pipes.py", "fetch") in [
        (frame["file"], frame["function"]) for frame in row.frames]


def test_the_system_checks_report_a_pipeline_whose_fetch_cannot_run(isolated_registry):
    from django.core import checks

    class Plain(Pipe):
        def fetch(self):
            return super().fetch()

    pipeline("fetch.check_mixed")(type("Mixed", (Plain, AsyncFetch), {}))
    pipeline("fetch.check_zero")(type("Zero", (AsyncFetch,), {"concurrency": 0}))

    errors = [e.msg for e in checks.run_checks() if e.id == "datapipe.E002"]

    assert len(errors) == 2
    assert "'fetch.check_mixed': Mixed mixes async def fetch" in errors[0]
    assert "'fetch.check_zero': Zero.concurrency must be a positive integer" in errors[1]
