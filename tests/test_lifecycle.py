"""The record of a local run while it runs and when it ends (see also test_contract.py).

Live counts, interrupted runs, two runs of one pipeline started together, and error
rows that a concurrent transaction holds: the edges of the run record's lifecycle.
"""

import threading
from collections import Counter

import pytest
from django.db import connection, connections

from datapipe import Pipe, get_session, pipeline
from datapipe.models import PipelineError, PipelineRun, PipelineTrack
from tests.testapp.models import ResultItem, SourceItem


def make_items(count, behaviour="ok"):
    return SourceItem.objects.bulk_create(
        SourceItem(number=n, behaviour=behaviour) for n in range(1, count + 1))


def outputs_per_source():
    return Counter(ResultItem.objects.exclude(source=None).values_list("source_id", flat=True))


def read_elsewhere(run_id):
    """The run's status and processed count, read through a connection of its own."""
    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            cursor.execute(
                "SELECT status, processed FROM datapipe_pipelinerun WHERE id = %s", [run_id])
            return cursor.fetchone()
    finally:
        other.close()


@pytest.fixture
def watching(isolated_registry):
    """A pipeline ``watching`` (one output per item) that reads its own run record from
    another connection when it reaches the item numbered 25, and raises
    KeyboardInterrupt at the item numbered ``context.interrupt_at``."""
    seen = {}

    @pipeline("watching")
    class Watching(Pipe):
        def process(self):
            item = super().process()
            self.add_to_save(ResultItem(source=item, number=item.number))
            if item.number == 25:
                run = PipelineRun.objects.filter(pipeline_name="watching").latest("pk")
                seen["elsewhere"] = read_elsewhere(run.pk)
            if item.number == self.context.get("interrupt_at"):
                raise KeyboardInterrupt
            return item

    return seen


@pytest.mark.parametrize("atomic", [True, False], ids=["atomic", "batches"])
def test_other_connections_see_a_running_runs_counts(postgres_only, transactional_db,
                                                     watching, atomic):
    make_items(30)

    report = get_session(chunksize=10, atomic=atomic, progress=False).run(
        SourceItem.objects.all(), "watching")

    assert watching["elsewhere"] == ("running", 20)
    run = PipelineRun.objects.get(pk=report.run_id)
    assert (run.status, run.processed, run.succeeded) == ("done", 30, 30)


def test_an_interrupted_atomic_run_records_that_it_kept_nothing(transactional_db, watching):
    make_items(30)

    with pytest.raises(KeyboardInterrupt):
        get_session(chunksize=10, context={"interrupt_at": 25}, progress=False).run(
            SourceItem.objects.all(), "watching")

    run = PipelineRun.objects.get(pipeline_name="watching")
    assert (run.status, run.processed, run.succeeded) == ("failed", 0, 0)
    assert run.message.startswith("interrupted (KeyboardInterrupt)")
    assert run.finished_at is not None
    assert not ResultItem.objects.exists()


def test_an_interrupted_run_in_batches_counts_the_batches_it_committed(transactional_db,
                                                                       watching):
    make_items(30)

    with pytest.raises(KeyboardInterrupt):
        get_session(chunksize=10, atomic=False, context={"interrupt_at": 25},
                    progress=False).run(SourceItem.objects.all(), "watching")

    run = PipelineRun.objects.get(pipeline_name="watching")
    assert (run.status, run.processed, run.succeeded) == ("failed", 20, 20)
    assert ResultItem.objects.count() == 20


def test_a_run_inside_the_callers_transaction_keeps_its_record_there(postgres_only, db):
    make_items(3)

    report = get_session(progress=False).run(SourceItem.objects.all(), "flow")

    assert read_elsewhere(report.run_id) is None  # not committed: the caller's to commit
    assert PipelineRun.objects.get(pk=report.run_id).processed == 3


def test_two_local_runs_of_one_pipeline_started_together_both_finish_exactly_once(
    transactional_db,
):
    items = make_items(60)
    start = threading.Barrier(2)
    reports, failures = [], []

    def run():
        try:
            start.wait(timeout=10)
            reports.append(get_session(chunksize=7, progress=False).run(
                SourceItem.objects.all(), "flow"))
        except BaseException as exc:  # reported below, in the test's thread
            failures.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert failures == []
    assert [(r.processed, r.succeeded) for r in reports] == [(60, 60), (60, 60)]
    assert outputs_per_source() == Counter(item.pk for item in items)
    assert PipelineTrack.objects.filter(pipeline_name="flow").count() == 60
    assert set(PipelineRun.objects.filter(pipeline_name="flow").values_list(
        "status", flat=True)) == {"done"}


def test_an_open_error_row_held_by_a_concurrent_transaction_is_updated(postgres_only,
                                                                       transactional_db):
    item = make_items(1, behaviour="error")[0]
    get_session(progress=False).run(SourceItem.objects.all(), "flow")
    row = PipelineError.objects.get()
    row.resolved = True  # closed, so the next failure needs a new open row
    row.save()
    inserted, release = threading.Event(), threading.Event()

    def hold_a_new_open_row():
        # Another run's transaction: the item's new open row, not committed yet.
        try:
            other = PipelineError.objects.get(pk=row.pk)
            other.pk, other.resolved, other.attempts = None, False, 1
            from django.db import transaction

            with transaction.atomic():
                other.save()
                inserted.set()
                release.wait(timeout=30)
        finally:
            connection.close()

    holder = threading.Thread(target=hold_a_new_open_row)
    holder.start()
    assert inserted.wait(timeout=10)
    threading.Timer(0.5, release.set).start()

    report = get_session(progress=False).run(SourceItem.objects.all(), "flow")
    holder.join(timeout=30)

    assert report.errored == 1 and report.status == "done"
    open_rows = PipelineError.objects.filter(resolved=False)
    assert [(r.item_id, r.attempts, r.run_id) for r in open_rows] == [
        (str(item.pk), 2, report.run_id)]
