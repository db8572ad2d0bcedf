"""``manage.py datapipe``: list, run, status, resend, errors, reprocess."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from datapipe.models import PipelineError, PipelineRun
from tests.failing import failed_items, fix, open_rows
from tests.testapp.models import ResultItem, SourceItem

pytestmark = pytest.mark.django_db


def datapipe(*args) -> str:
    out = StringIO()
    call_command("datapipe", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def test_list_shows_each_pipeline_with_its_depends_and_triggers():
    lines = {line.split()[0]: line.split() for line in datapipe("list").splitlines()[2:]}

    assert lines["flow"] == ["flow", "-", "flow.derived", "-"]
    assert lines["flow.derived"] == ["flow.derived", "-", "-", "flow"]
    assert lines["recorder.second"][:2] == ["recorder.second", "recorder.first"]


# run -------------------------------------------------------------------------------------------


def test_run_processes_the_filtered_rows_of_a_model_and_prints_the_report():
    SourceItem.objects.bulk_create([SourceItem(number=n) for n in (1, 2, 3)])
    SourceItem.objects.create(number=4, behaviour="error")

    out = datapipe("run", "flow", "--model", "testapp.SourceItem", "--filter", "number__gte=2",
                   "--allow-errors")

    assert "flow: 3 processed, 2 succeeded, 0 continued, 0 ignored, 1 errored" in out
    assert "(triggered) flow.derived: 2 processed" in out
    assert "datapipe errors --pipeline flow" in out
    assert sorted(ResultItem.objects.filter(source__isnull=False)
                  .values_list("number", flat=True)) == [2, 3]


@pytest.mark.parametrize("args, message", [
    (["run", "no.such", "--model", "testapp.SourceItem"], "no.such"),
    (["run", "flow", "--model", "testapp.Nothing"], "Unknown model 'testapp.Nothing'"),
    (["run", "flow", "--model", "SourceItem"], "Unknown model"),
    (["run", "flow", "--model", "testapp.SourceItem", "--filter", "colour=red"], "Bad filter"),
    (["run", "flow", "--model", "testapp.SourceItem", "--filter", "number"], "field=value"),
    (["run", "flow", "--model", "testapp.SourceItem", "--filter", "number=many"], "Bad filter"),
    (["run", "flow", "--model", "testapp.SourceItem", "--wait"], "--celery"),
    (["run", "flow", "--model", "testapp.SourceItem", "--chunksize", "0"], "positive"),
    (["status", "999999"], "No run 999999"),
    (["resend", "999999"], "No run 999999"),
    (["reprocess", "--pipeline", "flow"], "No open error rows"),
    (["reprocess", "--id", "1", "--queue", "q"], "--celery"),
])
def test_mistakes_are_reported_as_command_errors(args, message):
    with pytest.raises(CommandError, match=message):
        datapipe(*args)


def test_reprocess_needs_one_way_of_choosing_rows():
    with pytest.raises(CommandError):
        datapipe("reprocess")
    with pytest.raises(CommandError):
        datapipe("reprocess", "--pipeline", "flow", "--id", "1")


# status ----------------------------------------------------------------------------------------


def test_status_prints_a_run_record():
    failed_items("error", "ok")
    run = PipelineRun.objects.get(pipeline_name="flow")

    out = datapipe("status", str(run.pk))

    assert "status       done" in out
    assert "chunks" not in out  # a local run has none to count
    assert "errored      1" in out and "error rows   1" in out
    assert "child runs   1 done" in out


def test_status_prints_the_child_runs_as_a_tree(run_tree):
    flow = run_tree.children.get(pipeline_name="flow")
    derived = flow.children.get()
    after = run_tree.children.get(pipeline_name="test.tree.after")

    out = datapipe("status", str(run_tree.pk))

    assert out.split("\nchild runs:\n")[1].splitlines() == [
        f"  flow (run {flow.pk}): done, 3 processed, 0 errored",
        f"    flow.derived (run {derived.pk}): done, 3 processed, 0 errored, "
        f"triggered by run {flow.pk}",
        f"  test.tree.after (run {after.pk}): done, 3 processed, 0 errored, "
        f"triggered by run {run_tree.pk}",
    ]
    assert "child runs   2 done" in out


def test_status_of_a_child_run_names_its_parent(run_tree):
    after = run_tree.children.get(pipeline_name="test.tree.after")

    out = datapipe("status", str(after.pk))

    assert f"parent run    {run_tree.pk}" in out and f"triggered by  {run_tree.pk}" in out
    assert "child runs    none" in out


def test_status_lists_fifty_children_of_a_run_and_five_levels_and_counts_the_rest():
    root = PipelineRun.start("flow", "default")
    run = PipelineRun.start("flow.derived", "default", parent=root)
    for _ in range(6):  # a chain below the first child: levels 2 to 7
        run = PipelineRun.start("flow.derived", "default", parent=run)
    for _ in range(52):
        PipelineRun.start("flow.derived", "default", parent=root)

    lines = datapipe("status", str(root.pk)).split("\nchild runs:\n")[1].splitlines()

    assert len([line for line in lines if line.startswith("  flow.derived")]) == 50
    assert lines[-1] == "  ... and 3 more"
    chain = [line for line in lines if line.startswith("   ")]
    assert [len(line) - len(line.lstrip()) for line in chain] == [4, 6, 8, 10, 12]
    assert chain[-1] == "            ... and 1 more"  # the runs below the fifth level


def test_status_of_a_running_local_run_shows_its_counts_so_far():
    run = PipelineRun.start("flow", "default")
    PipelineRun.objects.filter(pk=run.pk).update(processed=7)

    out = datapipe("status", str(run.pk))

    assert "status       running" in out and "processed    7" in out
    assert "(running)" in out and "finished     -" in out


# errors and reprocess --------------------------------------------------------------------------


def test_errors_prints_one_line_per_open_failure():
    failed_items("error", "error", "query_error")
    signature = open_rows(error_type="ValueError").values_list("signature", flat=True)

    out = datapipe("errors")

    lines = out.splitlines()
    assert lines[0].split()[:4] == ["signature", "pipeline", "open", "items"]
    assert len([line for line in lines if line.startswith(tuple(s[:12] for s in signature))]) == 2
    assert " 2  " in out and "ValueError: bad item" in out


def test_errors_hides_resolved_failures_unless_all():
    items = failed_items("error")
    fix(items)
    datapipe("reprocess", "--pipeline", "flow")

    assert datapipe("errors") == "No open errors.\n"
    assert "flow" in datapipe("errors", "--all", "--pipeline", "flow")
    assert datapipe("errors", "--all", "--pipeline", "other") == "No errors.\n"


def test_reprocess_by_signature_prefix_resolves_the_fixed_items():
    items = failed_items("error", "error")
    fix(items)
    signature = open_rows().first().signature

    out = datapipe("reprocess", "--signature", signature[:10])

    assert "flow: 2 rows reprocessed, 2 resolved, 0 still open, 0 missing" in out
    assert not open_rows().exists()


def test_reprocess_by_id_takes_one_row():
    items = failed_items("error", "error")
    fix(items)
    row = open_rows().get(item_id=str(items[0].pk))

    datapipe("reprocess", "--id", str(row.pk))

    assert list(open_rows().values_list("item_id", flat=True)) == [str(items[1].pk)]


def test_reprocess_by_an_ambiguous_signature_prefix_is_refused():
    failed_items("error", "query_error")
    with pytest.raises(CommandError, match="several failures"):
        datapipe("reprocess", "--signature", "")
    assert open_rows().count() == 2


# Celery ----------------------------------------------------------------------------------------


def test_run_in_celery_waits_with_progress_and_prints_the_counts(celery_worker):
    SourceItem.objects.bulk_create([SourceItem() for _ in range(5)])
    SourceItem.objects.create(behaviour="error")

    out = datapipe("run", "flow", "--model", "testapp.SourceItem", "--celery",
                   "--queue", celery_worker.queue, "--chunksize", "2", "--wait",
                   "--allow-errors")

    run = PipelineRun.objects.get(pipeline_name="flow", distributed=True)
    assert f"Run {run.pk} of 'flow' sent to Celery" in out
    assert f"Run {run.pk} done: 6 processed, 5 succeeded, 0 continued, 0 ignored, 1 errored" in out
    status = datapipe("status", str(run.pk))
    assert "chunks       3/3 done (100%)" in status and "chunks: 3 done" in status
    assert f"flow.derived (run {run.children.first().pk}): done" in status  # run in a chunk


def test_reprocess_in_celery_resolves_rows_on_the_workers(celery_worker):
    items = failed_items("error", "error")
    fix(items)

    out = datapipe("reprocess", "--pipeline", "flow", "--celery", "--queue", celery_worker.queue)

    run = PipelineRun.objects.get(pipeline_name="flow", distributed=True)
    assert f"Follow run {run.pk}" in out
    from datapipe.distributed.dispatch import RunHandle

    RunHandle(run.pk).wait(timeout=60)
    assert not open_rows().exists()
    assert PipelineError.objects.filter(resolved=True).count() == 2


def test_resend_of_a_finished_run_sends_nothing_and_says_so(celery_worker):
    SourceItem.objects.create()
    datapipe("run", "flow", "--model", "testapp.SourceItem", "--celery",
             "--queue", celery_worker.queue, "--wait")
    run = PipelineRun.objects.get(pipeline_name="flow", distributed=True)

    with pytest.raises(CommandError, match=f"Run {run.pk} of 'flow' \\(done\\) has no lost or "
                                           "failed chunk to send.$"):
        datapipe("resend", str(run.pk))


# resend and sweep: runs that stopped moving -------------------------------------------------


def stale_distributed_run(count=4, chunksize=2):
    """A distributed run (never sent: the test's transaction does not commit) whose chunks
    were dispatched an hour ago and never started."""
    from datetime import timedelta

    from django.utils import timezone

    from datapipe import get_session
    from datapipe.models import PipelineChunk

    SourceItem.objects.bulk_create([SourceItem(number=n) for n in range(count)])
    handle = get_session().run_in_celery(SourceItem.objects.all(), "flow",
                                         celery_chunksize=chunksize, queue="never-sent")
    PipelineChunk.objects.filter(run_id=handle.id).update(
        dispatched_at=timezone.now() - timedelta(hours=1))
    PipelineRun.objects.filter(pk=handle.id).update(
        started_at=timezone.now() - timedelta(hours=1))
    return handle


@pytest.mark.parametrize("which, message", [
    ("unknown", "No run 999999"),
    ("local", "ran locally: it has no chunks to send"),
])
def test_resend_of_a_run_with_nothing_to_send_says_why_and_fails(which, message):
    run_id = 999999
    if which == "local":
        SourceItem.objects.create(number=1)
        from datapipe import get_session

        run_id = get_session(progress=False).run(SourceItem.objects.all(), "flow").run_id

    with pytest.raises(CommandError, match=message):
        datapipe("resend", str(run_id))


def test_resend_of_a_run_without_lost_chunks_hints_at_stale_after():
    handle = stale_distributed_run()

    with pytest.raises(CommandError, match="no lost or failed chunk to send; if its chunks "
                                           "stopped moving, add --stale-after"):
        datapipe("resend", str(handle.id))
    assert datapipe("resend", str(handle.id), "--stale-after", "60") == (
        f"2 chunks of run {handle.id} sent again.\n")


def test_status_marks_a_stale_run_and_the_sweep_heals_it():
    handle = stale_distributed_run()

    assert "running (stale: no chunk moved for 300 s" in datapipe("status", str(handle.id))
    assert datapipe("sweep") == (
        "Sweep: 2 chunks of 1 runs sent again, 0 given up, 0 runs finished.\n")
    assert "stale" not in datapipe("status", str(handle.id))
