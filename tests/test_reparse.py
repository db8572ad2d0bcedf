"""Reparse: after a run, each item's outputs are those of its latest kept processing."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from datapipe import Pipe, PipeError, get_session, pipeline
from datapipe.models import PipelineError as ErrorRow
from datapipe.models import PipelineTrack
from tests.testapp.models import CodeItem, Derived, ResultItem, SourceItem, UUIDItem

pytestmark = pytest.mark.django_db


def make_items(*behaviours):
    return SourceItem.objects.bulk_create([SourceItem(behaviour=b) for b in behaviours])


def set_behaviour(items, *behaviours):
    for item, behaviour in zip(items, behaviours, strict=True):
        item.behaviour = behaviour
    SourceItem.objects.bulk_update(items, ["behaviour"])


def outputs(item):
    return list(ResultItem.objects.filter(source=item).values_list("pk", flat=True))


def test_rerun_replaces_outputs_instead_of_duplicating(session):
    items = make_items("ok", "ok")
    session.run(SourceItem.objects.all(), "flow")
    first = [outputs(i) for i in items]
    session.run(SourceItem.objects.all(), "flow")
    second = [outputs(i) for i in items]
    assert [len(o) for o in second] == [1, 1]
    assert first != second  # new rows replaced the old ones
    assert PipelineTrack.objects.filter(pipeline_name="flow").count() == 2


@pytest.mark.parametrize("behaviour", ["ignore", "error", "query_error", "query_ignore"])
def test_item_not_kept_this_time_keeps_its_old_outputs(session, behaviour):
    items = make_items("ok", "ok")
    session.run(SourceItem.objects.all(), "flow")
    before = outputs(items[0])
    set_behaviour(items, behaviour, "ok")
    session.run(SourceItem.objects.all(), "flow")
    assert outputs(items[0]) == before
    assert Derived.objects.filter(result_ref__in=before).count() == 1


def test_items_after_a_break_keep_their_old_outputs(session):
    items = make_items("ok", "ok", "ok")
    session.run(SourceItem.objects.all(), "flow")
    before = [outputs(i) for i in items]
    set_behaviour(items, "ok", "break", "ok")
    session.run(SourceItem.objects.all(), "flow")
    after = [outputs(i) for i in items]
    assert after[0] != before[0] and after[1:] == before[1:]


def test_item_failing_at_the_flush_keeps_its_old_outputs():
    items = make_items("ok", "ok", "ok")
    get_session().run(SourceItem.objects.all(), "flow")
    before = outputs(items[2])
    set_behaviour(items, "duplicate", "ok", "duplicate")
    report = get_session().run(SourceItem.objects.all(), "flow")
    assert report.errored == 1
    assert outputs(items[2]) == before


def test_items_filtered_out_by_prepare_lose_their_outputs_queryset():
    items = make_items("ok", "ok", "ok")
    get_session().run(SourceItem.objects.all(), "flow")
    get_session(context={"skip": [items[1].pk]}).run(SourceItem.objects.all(), "flow")
    assert [len(outputs(i)) for i in items] == [1, 0, 1]
    assert Derived.objects.count() == 2


def test_items_filtered_out_by_prepare_lose_their_outputs_list():
    items = make_items("ok", "ok", "ok")
    get_session().run(items, "flow")
    get_session(context={"skip": [items[0].pk]}).run(list(items), "flow")
    assert [len(outputs(i)) for i in items] == [0, 1, 1]


def test_items_filtered_out_by_a_generator_prepare_lose_their_outputs(isolated_registry):
    @pipeline("test.genfilter")
    class GenFilter(Pipe):
        def prepare(self, items):
            return (i for i in super().prepare(items) if i.behaviour != "skip")

        def process(self):
            self.add_to_save(ResultItem(source=self.item))

    items = make_items("ok", "ok")
    get_session().run(SourceItem.objects.all(), "test.genfilter")
    set_behaviour(items, "skip", "ok")
    get_session().run(SourceItem.objects.all(), "test.genfilter")
    assert [len(outputs(i)) for i in items] == [0, 1]


def test_reparse_cascades_along_triggers(session):
    items = make_items("ok", "ok")
    session.run(SourceItem.objects.all(), "flow")
    session.run(SourceItem.objects.all(), "flow")
    current = set(ResultItem.objects.values_list("pk", flat=True))
    derived = set(Derived.objects.values_list("result_ref", flat=True))
    assert derived == current and len(current) == len(items)
    assert PipelineTrack.objects.filter(pipeline_name="flow.derived").count() == 2
    derived_tracks = PipelineTrack.objects.filter(pipeline_name="flow.derived")
    assert set(derived_tracks.values_list("triggered_by", flat=True)) == {"flow"}


def test_untracked_pipelines_keep_every_output(session):
    make_items("ok")
    session.run(SourceItem.objects.all(), "flow.untracked")
    session.run(SourceItem.objects.all(), "flow.untracked")
    assert ResultItem.objects.count() == 2
    assert not PipelineTrack.objects.exists()


def test_the_same_item_twice_in_one_run_keeps_the_last_outputs(session):
    (item,) = make_items("ok")
    session.run([item, item], "flow.untracked")  # untracked: two outputs
    ResultItem.objects.all().delete()
    session.run([item, item], "flow")
    assert len(outputs(item)) == 1
    assert PipelineTrack.objects.filter(pipeline_name="flow").count() == 1


@pytest.mark.parametrize("model,make", [
    (UUIDItem, lambda n: UUIDItem(number=n)),
    (CodeItem, lambda n: CodeItem(code=f"c-{n}", number=n)),
])
def test_items_with_any_primary_key_type_are_tracked(session, model, make):
    model.objects.bulk_create([make(n) for n in range(3)])
    session.run(model.objects.all(), "uuid")
    session.run(model.objects.all(), "uuid")
    assert ResultItem.objects.count() == 3
    assert PipelineTrack.objects.filter(pipeline_name="uuid").count() == 3


def test_tracking_issues_no_query_per_item():
    def queries_for(count):
        SourceItem.objects.all().delete()
        make_items(*["ok"] * count)
        get_session(chunksize=5000).run(SourceItem.objects.all(), "flow")
        with CaptureQueriesContext(connection) as queries:
            get_session(chunksize=5000).run(SourceItem.objects.all(), "flow")
        return len(queries.captured_queries)

    few, many = queries_for(10), queries_for(400)
    # Django deletes in batches of 100 rows: a few more queries, never one per item.
    assert many - few < 20


# The invariant, checked against a plain-Python model --------------------------------------

BEHAVIOURS = [
    "ok", "ok", "continue", "query", "ignore", "error", "query_error", "break", "duplicate",
]
N_ITEMS = 5

runs = st.lists(
    st.tuples(
        st.lists(st.sampled_from(BEHAVIOURS), min_size=N_ITEMS, max_size=N_ITEMS),
        st.sets(st.integers(0, N_ITEMS - 1), max_size=2),  # filtered out by prepare
        st.integers(1, 4),  # chunksize
        st.booleans(),  # a list rather than a QuerySet
        st.booleans(),  # PipeError in this run
    ),
    min_size=1,
    max_size=4,
)


def expected_after(model, behaviours, skipped, pipe_error):
    """The plain-Python model: which items hold outputs, and whether they changed."""
    if pipe_error:
        return dict(model), set()
    new = dict(model)
    replaced = set()
    duplicate_seen = False
    for index in skipped:  # filtered out by prepare, whether or not the loop breaks
        new[index] = False
    for index, behaviour in enumerate(behaviours):
        if index in skipped:
            continue
        if behaviour == "break":
            break
        if behaviour in ("ok", "continue", "query"):
            new[index] = True
            replaced.add(index)
        elif behaviour == "duplicate":
            # unique_key collides with any other "duplicate" output this run (or kept before)
            if not duplicate_seen:
                duplicate_seen = True
                new[index] = True
                replaced.add(index)
    return new, replaced


# Examples: the profile's (tests/conftest.py: 25, or 1,000 in the thorough profile).
@settings(deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(runs=runs)
def test_outputs_match_the_model_after_any_sequence_of_runs(runs):
    for model_cls in (Derived, ResultItem, SourceItem, PipelineTrack, ErrorRow):
        model_cls.objects.all().delete()
    items = make_items(*["ok"] * N_ITEMS)
    model = {i: False for i in range(N_ITEMS)}
    for behaviours, skipped, chunksize, as_list, pipe_error in runs:
        if any(b == "duplicate" for b in behaviours):
            # a duplicate kept from an earlier run would collide; start those runs clean
            ResultItem.objects.filter(unique_key__isnull=False).update(unique_key=None)
        if pipe_error:
            behaviours = list(behaviours)
            behaviours[-1] = "pipe_error"
        set_behaviour(items, *behaviours)
        before = {i: set(outputs(item)) for i, item in enumerate(items)}
        sess = get_session(chunksize=chunksize, context={"skip": [items[i].pk for i in skipped]})
        source = list(SourceItem.objects.order_by("pk")) if as_list else SourceItem.objects.all()
        if pipe_error and not any(
            b == "break" for i, b in enumerate(behaviours[:-1]) if i not in skipped
        ) and (N_ITEMS - 1) not in skipped:
            with pytest.raises(PipeError):
                sess.run(source, "flow")
            expected, replaced = expected_after(model, behaviours, skipped, True)
        else:
            sess.run(source, "flow")
            expected, replaced = expected_after(model, behaviours, skipped, False)
        for index, item in enumerate(items):
            now = set(outputs(item))
            assert bool(now) == expected[index], (index, behaviours, skipped)
            assert len(now) <= 1
            if index in replaced:
                assert now.isdisjoint(before[index])
            elif expected[index]:
                assert now == before[index]
        model = expected
        # The triggered pipeline's outputs follow the current results exactly (cascade).
        current = set(ResultItem.objects.values_list("pk", flat=True))
        assert sorted(Derived.objects.values_list("result_ref", flat=True)) == sorted(current)
