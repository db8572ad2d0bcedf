"""The contract of a run, held the same locally and through Celery workers.

One set of tests, two backends (as huey runs one storage suite over each): every test
takes ``runner``, which runs a pipeline over SourceItems either in this process
(``sess.run``) or in Celery chunks of 2 on a real worker (``sess.run_in_celery`` and
``wait``), and returns the run's record. The Celery half runs on PostgreSQL only.
"""

from collections import Counter

import tests.distributed_pipes  # noqa: F401  (registers the dist.* pipelines)
from datapipe.models import PipelineError, PipelineRun, PipelineTrack
from tests.testapp.models import Derived, Note, ResultItem, SourceItem

COUNTS = ("processed", "succeeded", "continued", "ignored", "errored")


def make_items(behaviours, number=1):
    return [SourceItem.objects.create(behaviour=b, number=number) for b in behaviours]


def outputs_per_source():
    return Counter(ResultItem.objects.exclude(source=None).values_list("source_id", flat=True))


def counts(run):
    return {name: getattr(run, name) for name in COUNTS}


# The flow-control table -------------------------------------------------------------------

TABLE_ITEMS = ["ok", "continue", "ignore", "error", "query", "query_ignore", "query_error",
               "note", "ok"]


def test_the_flow_control_table_holds(runner):
    items = make_items(TABLE_ITEMS)
    by_behaviour = {item.behaviour: item for item in items}

    run = runner.run("flow")

    assert counts(run) == {"processed": 9, "succeeded": 4, "continued": 1, "ignored": 2,
                           "errored": 2}
    assert run.status == "done"
    kept = {"ok", "continue", "query", "note"}
    assert outputs_per_source() == Counter(i.pk for i in items if i.behaviour in kept)
    touched = dict(SourceItem.objects.values_list("behaviour", "touched").exclude(behaviour="ok"))
    assert touched == {"continue": 0, "ignore": 0, "error": 0, "query": 1, "query_ignore": 0,
                       "query_error": 0, "note": 0}
    assert Note.objects.get().result.source == by_behaviour["note"]
    errors = PipelineError.objects.filter(pipeline_name="flow")
    assert sorted(errors.values_list("item_id", flat=True)) == sorted(
        str(by_behaviour[b].pk) for b in ("error", "query_error"))
    # the triggered pipeline ran on the kept results
    assert Derived.objects.count() == sum(1 for item in items if item.behaviour in kept)


# Reparse ------------------------------------------------------------------------------------

def test_a_second_run_replaces_outputs_and_what_triggers_derived_from_them(runner):
    items = make_items(["ok", "ok", "ignore", "ok", "error"])
    runner.run("flow")
    first_outputs = set(ResultItem.objects.values_list("pk", flat=True))

    run = runner.run("flow")

    kept = [item.pk for item in items if item.behaviour == "ok"]
    assert outputs_per_source() == Counter(kept)
    assert not first_outputs & set(ResultItem.objects.values_list("pk", flat=True))
    assert sorted(Derived.objects.values_list("result_ref", flat=True)) == sorted(
        ResultItem.objects.values_list("pk", flat=True))
    assert PipelineTrack.objects.filter(pipeline_name="flow").count() == len(kept)
    assert run.status == "done"


def test_an_item_failing_this_time_keeps_its_previous_outputs(runner):
    items = make_items(["ok", "ok", "ok"])
    runner.run("flow")
    before = set(ResultItem.objects.values_list("pk", flat=True))
    SourceItem.objects.filter(pk=items[1].pk).update(behaviour="error")

    runner.run("flow")

    assert outputs_per_source() == Counter(item.pk for item in items)
    kept_output = ResultItem.objects.get(source=items[1])
    assert kept_output.pk in before


# Error rows ---------------------------------------------------------------------------------

def test_a_failing_item_has_one_open_row_updated_per_attempt_and_resolved_once_fixed(runner):
    items = make_items(["ok", "error", "ok"])
    first = runner.run("flow")
    second = runner.run("flow")

    row = PipelineError.objects.get(pipeline_name="flow")
    assert (row.item_id, row.attempts, row.resolved) == (str(items[1].pk), 2, False)
    assert row.run_id == second.pk != first.pk
    assert row.error_type == "ValueError"

    SourceItem.objects.filter(pk=items[1].pk).update(behaviour="ok")
    third = runner.run("flow")

    row.refresh_from_db()
    assert row.resolved and row.resolved_at is not None
    assert counts(third)["succeeded"] == 3


# The lifecycle of records ----------------------------------------------------------------------

def test_depends_and_triggers_are_children_of_the_run_that_started_them(runner):
    make_items(["ok", "ok", "ok", "ignore"])

    run = runner.run("dist.chained")

    assert list(PipelineRun.objects.roots()) == [run]
    children = list(run.children.order_by("pk"))
    names = Counter(child.pipeline_name for child in children)
    per_chunk = run.chunks_total if run.distributed else 1
    assert names == {"dist.pre": per_chunk, "dist.post": per_chunk}
    for child in children:
        assert child.status == "done"
        if child.pipeline_name == "dist.post":
            assert child.triggered_by_id == run.pk
        else:
            assert child.triggered_by_id is None
    assert sum(c.processed for c in children if c.pipeline_name == "dist.pre") == 4
    assert sum(c.processed for c in children if c.pipeline_name == "dist.post") == 3


def test_a_failing_finish_run_marks_the_run_failed_and_keeps_its_outputs(runner):
    items = make_items(["ok", "ok", "error"])

    run = runner.run("dist.finish_fails")

    assert run.status == "failed"
    assert run.message == "finish_run: RuntimeError: finish_run broke"
    assert outputs_per_source() == Counter([items[0].pk, items[1].pk])
    assert counts(run) == {"processed": 3, "succeeded": 2, "continued": 0, "ignored": 0,
                           "errored": 1}
    assert PipelineError.objects.filter(pipeline_name="dist.finish_fails").count() == 1


def test_on_commit_callbacks_run_once_for_kept_items_and_never_for_rolled_back_ones(runner):
    items = make_items(["ok", "ignore", "error", "duplicate", "duplicate", "continue",
                        "query_error", "ok"])

    run = runner.run("dist.hooks")

    hooked = sorted(int(key.removeprefix("hook-")) for key in
                    ResultItem.objects.filter(unique_key__startswith="hook-")
                    .values_list("unique_key", flat=True))
    kept = sorted(outputs_per_source())
    # one of the two duplicates fails at the flush (unique key): its callback goes too
    assert len(kept) == 4
    assert hooked == kept
    assert {items[0].pk, items[5].pk, items[7].pk} < set(kept)
    assert counts(run)["errored"] == 3
